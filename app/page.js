// The canvas app's page script. It marks the page pending (<html $pending>: page.css
// dims the answer and labels it "Updating…") whenever the answer on screen may not be
// the server's answer for the drawing on the canvas. It only marks the page: it never
// changes what the server computes. Added to the page once by app/streamlit_app.py;
// its placeholders (a dollar sign and a name) are filled from app/page_assets.py, which
// names the page's DOM contract (so no other dollar sign here: no template literals).
//
// THE RULE. The page is pending while the pen is down on the canvas, and from every
// change of the drawing (a stroke ends; Undo, Redo or Reset is pressed) until the
// server's answer for the drawing now on the canvas is on screen. That answer is the
// answer area (.st-key-$answer_key) whose mark, the hidden <span $run $strokes>
// that starts every answer area, shows
//   1. a run token ($run) other than the one on screen when the drawing last changed:
//      the server rendered this answer after the change;
//   2. as many strokes ($strokes) as the drawing on the canvas has;
//   3. and that is complete: neither the mark nor the answer after it (the Prediction,
//      the prompt or an error message) is stale (Streamlit marks what a run under way
//      has not rendered again data-stale="true").
// Nothing here reads a clock or waits for time to pass: however slow the server, a
// stale answer stays marked until that answer arrives. And it always arrives: every
// change of the drawing makes the canvas send it, and every run renders the mark.
//
// The server's answer in each state (app/streamlit_app.py): the mark comes first,
// whatever follows it.
//   - A drawing with ink: the Prediction, for its N strokes ($strokes="N").
//   - An empty canvas (zero strokes: at the start, after Reset, after undoing every
//     stroke): the prompt to draw, $strokes="0".
//   - A drawing the server cannot read: the error message, $strokes="N".
//   - A run that fails after the mark: the mark alone (the error shows below it).
//   - An upload: there is no canvas on the page and the page is never pending without
//     one ($strokes is absent).
// Reruns started by other widgets (the engine, the toggles, the stroke width) change
// no drawing, so they never mark the page; one that ends while the page is pending
// ends it only by meeting 1-3, i.e. if it read the drawing now on the canvas.
//
// The strokes on the canvas are counted here as the canvas (streamlit-drawable-canvas
// 0.13, pinned) keeps its drawing and its history:
//   - a stroke (the primary pointer down on the canvas, then up) adds one: the canvas
//     keeps every stroke, a dot too; one the browser cancels (pointercancel) adds none;
//   - Undo goes back one step (none at the start: an empty canvas), Redo forward one,
//     Reset empties the canvas and its history; a new canvas (after the Upload tab)
//     starts empty;
//   - what cannot be counted is not guessed: in the toolbar's Edit mode the pen moves,
//     scales or only selects strokes, and Delete selected, Bring forward and Send
//     backward change the drawing in ways the page does not see. After those the
//     count is unknown until an answer gives it: the pen still marks the page while it
//     is down; those buttons, and a stroke, wait for the next complete answer rendered
//     after them (rule 2 dropped) and take its count. Undo and Redo, whose effect is
//     then unknown (they may change nothing and start no run), mark nothing until
//     Reset or a new canvas makes the history known again; Streamlit's own stale marks
//     still dim the runs they start.
// Two drawings of the same stroke count are told apart by rule 1 alone: an answer for
// an undone drawing that was already on its way when the drawing changed could pass,
// until the answers behind it arrive (only over a network slower than a stroke).
(() => {
  if (window.__digitPage) return;  // installed once per page
  const PENDING = "$pending", RUN = "$run", STROKES = "$strokes";
  const ANSWER = ".st-key-$answer_key";
  const LEAD = '[data-testid="stMetric"], [data-testid="stAlert"]';
  const CANVAS = "canvas.upper-canvas";  // the canvas's drawing layer, in its shadow root
  const UNDO_STEPS = 100;                // the canvas's Undo keeps this many steps
  const html = document.documentElement;
  const page = window.__digitPage = {
    canvas: null,        // the canvas counted
    count: 0,            // its strokes (null: unknown)
    undo: [], redo: [],  // its history: the counts Undo and Redo go back to (null: unknown)
    pen: null,           // the pointer drawing on it: {id, edit}
    waiting: false,      // the drawing changed and its answer is not on screen yet
    before: null         // the run token on screen when the drawing last changed
  };

  const stale = (el) => !!(el && el.closest('[data-stale="true"]'));
  // The answer area on screen: its mark's run token and stroke count, and whether it is
  // complete (rule 3); null if there is none.
  const shown = () => {
    const area = document.querySelector(ANSWER);
    const mark = area && area.querySelector("[" + RUN + "]");
    if (!mark) return null;
    return {run: mark.getAttribute(RUN),
            strokes: mark.hasAttribute(STROKES) ? Number(mark.getAttribute(STROKES)) : null,
            complete: !stale(mark) && !stale(area.querySelector(LEAD))};
  };
  const update = () => {
    const a = page.waiting && shown();
    if (a && a.complete && a.run !== page.before &&
        (page.count === null || a.strokes === page.count)) {
      page.waiting = false;
      page.count = a.strokes;
    }
    const on = !!(page.canvas && page.canvas.isConnected) && (page.pen !== null || page.waiting);
    if (on !== html.hasAttribute(PENDING)) html.toggleAttribute(PENDING, on);
  };

  // The drawing changed to `count` strokes (null: unknown): wait for its answer.
  const changed = (count) => {
    const a = shown();
    Object.assign(page, {count, waiting: true, before: a && a.run});
  };
  const unknown = () => Object.assign(page, {count: null, undo: null, redo: null});
  const follow = (canvas) => {  // a canvas not seen before is a new, empty one
    if (canvas !== page.canvas) {
      Object.assign(page, {canvas, count: 0, undo: [], redo: [], pen: null, waiting: false});
    }
  };
  const stroke = () => {  // the canvas saves its drawing with one stroke more
    if (page.undo) {
      page.undo = page.undo.slice(page.undo.length >= UNDO_STEPS ? 1 : 0).concat([page.count]);
    }
    page.redo = [];
    changed(page.count === null ? null : page.count + 1);
  };
  const undo = () => {
    if (!page.undo) unknown();
    else if (page.count !== 0) {  // at 0 the canvas is at its start: Undo does nothing
      page.redo = page.redo.concat([page.count]);
      changed(page.undo.length ? page.undo.pop() : page.count);
    }
  };
  const redo = () => {
    if (!page.undo || !page.redo) unknown();
    else if (page.redo.length) {
      page.undo = page.undo.concat([page.count]);
      changed(page.redo.pop());
    }
  };
  const TOOLS = {
    "Undo": undo,
    "Redo": redo,
    "Reset canvas & history": () => { page.undo = []; page.redo = []; changed(0); },
    "Delete selected": () => { unknown(); changed(null); },
    "Bring forward": () => { unknown(); changed(null); },
    "Send backward": () => { unknown(); changed(null); },
    "Edit": () => {},                              // a mode: read when the pen goes down
    "Update the app with this drawing": () => {}   // sends the same drawing again
  };

  const find = (e, test) => e.composedPath().find((n) => n instanceof Element && test(n));
  const editing = (canvas) => {
    const edit = canvas.getRootNode().querySelector('button[title="Edit"]');
    return !!edit && edit.getAttribute("aria-pressed") === "true";
  };
  document.addEventListener("pointerdown", (e) => {
    const canvas = e.isPrimary && e.button === 0 && find(e, (n) => n.matches(CANVAS));
    if (!canvas) return;
    follow(canvas);
    page.pen = {id: e.pointerId, edit: editing(canvas)};
    update();
  }, true);
  const lift = (e) => {
    const pen = page.pen;
    if (!pen || e.pointerId !== pen.id) return;
    page.pen = null;
    if (e.type === "pointerup") {
      if (pen.edit) unknown();  // moved, scaled or only selected a stroke
      else stroke();
    }
    update();
  };
  document.addEventListener("pointerup", lift, true);
  document.addEventListener("pointercancel", lift, true);
  // The toolbar acts on click (a disabled button gets none); this runs before it does.
  document.addEventListener("click", (e) => {
    const button = find(e, (n) => n.tagName === "BUTTON" && n.getRootNode() instanceof ShadowRoot);
    const canvas = button && button.getRootNode().querySelector(CANVAS);
    if (!canvas) return;
    follow(canvas);
    (TOOLS[button.getAttribute("title")] || unknown)();
    update();
  }, true);
  new MutationObserver(update).observe(document.body, {
    subtree: true, childList: true, attributes: true,
    attributeFilter: ["data-stale", RUN, STROKES]});
  update();
})();
