"""Harnesses that drive the canvas app in a real browser, put it under load and
break things on purpose. They are not part of the installable package (they need
the repository's ``app/`` folder, Debian Chromium, Playwright and psutil from the
``test`` extra); run them from the repository root, e.g. ``python -m benchmarks.load``.
The browser, the app server and the pointer-drawing helper they drive it with live
beside the app, in ``app/browser_driver.py`` (the screenshot script uses them too).
"""
