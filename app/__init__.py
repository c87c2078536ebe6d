"""The canvas app's folder. Streamlit runs ``app/streamlit_app.py`` as a script (it
imports ``page_assets`` from beside it); the harness imports the folder as the package
``app`` (``app.page_assets``, ``app.browser_driver``), from the repository root."""
