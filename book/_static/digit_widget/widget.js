/* The book's digit widget: draw a digit, and the network reads it in the page.
 *
 * A page adds <div data-testid="digit-widget"></div> and this script. The
 * script loads, from its own folder, the weights written by
 * `python -m mnist_cnn export-web` (weights.js: a <script> works from disk,
 * where browsers refuse fetch()), the forward pass (forward.js) and the
 * preprocessing (preprocess.js). Nothing is fetched from any other host.
 *
 * Contract (the tests rely on it): the first <canvas> inside the root is the
 * drawing surface; after each stroke the root carries data-digit (0-9) and
 * data-probabilities (a JSON array of ten numbers), or neither when there is
 * nothing to read; the "Clear" button clears the canvas and removes them.
 * data-state says what the widget shows: loading, ready, predicted, empty,
 * too-small or error; data-latency-ms and data-shown-ms time the last reading.
 */
(function (MnistCnn) {
  "use strict";

  const CANVAS = 280;          // the drawing surface, in canvas pixels (as the app's)
  const BRUSH = 18;            // brush width, the app's default
  const MIN_SIDE = 2 * BRUSH;  // ink spanning less than this (a dot, a tick) is too small
  const FORMAT = "mnist_cnn-web/1";
  const MESSAGES = {
    ready: "Draw a digit (0–9) in the black box: the network reads it when you lift the pen.",
    empty: "No digit found: the box is blank. Draw a digit (0–9).",
    tooSmall: "Too small to read: draw the digit bigger, to fill a good part of the box.",
    loading: "Loading the network…",
  };

  const base = (document.currentScript && document.currentScript.src || "")
    .replace(/[^/]*$/, "");

  function loadScript(name) {
    return new Promise(function (resolve, reject) {
      const s = document.createElement("script");
      s.src = base + name;
      s.onload = resolve;
      s.onerror = function () { reject(new Error(name + " could not be loaded")); };
      document.head.appendChild(s);
    });
  }

  // ------------------------------------------------------------- the weights

  function halfToFloat(h) {
    const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return sign * f * Math.pow(2, -24);
    if (e === 31) return f ? NaN : sign * Infinity;
    return sign * (1 + f / 1024) * Math.pow(2, e - 15);
  }

  function decode(bytes, dtype) {
    const view = new DataView(bytes.buffer), size = dtype === "float16" ? 2 : 4;
    if (dtype !== "float16" && dtype !== "float32") throw new Error("unknown dtype " + dtype);
    const out = new Float32Array(bytes.length / size);
    for (let i = 0; i < out.length; i++)
      out[i] = size === 2 ? halfToFloat(view.getUint16(2 * i, true)) : view.getFloat32(4 * i, true);
    return out;
  }

  // The payload of weights.js -> {manifest, layers (with W and b arrays)}; throws
  // an Error saying what is wrong with a damaged or foreign file.
  async function loadNetwork(payload) {
    const m = payload && payload.manifest;
    if (!m || m.format !== FORMAT || typeof payload.data !== "string")
      throw new Error("weights.js is not a " + FORMAT + " export");
    let bytes;
    try {
      bytes = Uint8Array.from(atob(payload.data), (c) => c.charCodeAt(0));
    } catch (e) {
      throw new Error("the weights are not valid base64");
    }
    if (bytes.length !== m.weights_bytes)
      throw new Error("the weights are " + bytes.length + " bytes, the manifest says " + m.weights_bytes);
    // crypto.subtle exists on https, localhost and file:// pages (where the book is
    // read); on a plain-http host only the size and shape checks remain.
    if (window.crypto && crypto.subtle) {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
      if (hex !== m.weights_sha256) throw new Error("the weights do not match their SHA-256");
    }
    const flat = decode(bytes, m.dtype);
    const layers = m.layers.map(function (entry) {
      if (!MnistCnn.ops[entry.class]) throw new Error("unknown layer " + entry.class);
      const layer = Object.assign({}, entry);
      for (const w of entry.weights || []) {
        const n = w.shape.reduce((a, d) => a * d, 1);
        if (n !== w.length || w.offset + n > flat.length)
          throw new Error("layer " + entry.name + ": weight " + w.name + " does not fit");
        layer[w.name] = flat.subarray(w.offset, w.offset + n);
      }
      return layer;
    });
    return { manifest: m, layers: layers };
  }

  // Everything the widgets need, loaded once per page.
  const ready = loadScript("forward.js")
    .then(function () { return loadScript("preprocess.js"); })
    .then(function () {
      return loadScript("weights.js").catch(function () {
        throw new Error("the network's weights (weights.js) are missing. Build the book with " +
                        "`make book`, which exports them (python -m mnist_cnn export-web)");
      });
    })
    .then(function () { return loadNetwork(window.MNIST_CNN_WEIGHTS); });
  // Tests and the benchmark wait on this; an unhandled rejection would log an error.
  ready.catch(function () {});

  // ---------------------------------------------------------------- the widget

  const STYLE = `
.digit-widget { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start;
  margin: 1em 0; font-size: 0.9rem; }
.digit-widget canvas.dw-draw { width: 280px; max-width: 100%; aspect-ratio: 1; background: #000;
  border-radius: 6px; touch-action: none; cursor: crosshair; display: block; }
.digit-widget .dw-side { min-width: 14em; flex: 1; }
.digit-widget canvas.dw-preview { width: 84px; height: 84px; image-rendering: pixelated;
  background: #000; border: 1px solid #888; vertical-align: middle; }
.digit-widget .dw-digit { font-size: 2.6em; font-weight: 700; margin-left: 0.4em;
  vertical-align: middle; }
.digit-widget .dw-caption { margin-bottom: 0.3em; opacity: 0.8; }
.digit-widget .dw-message { min-height: 2.6em; margin: 0.4em 0; }
.digit-widget .dw-error { color: #b00020; }
.digit-widget .dw-bar { display: flex; align-items: center; gap: 0.4em; height: 1.15em; }
.digit-widget .dw-bar span:first-child { width: 1em; text-align: right; }
.digit-widget .dw-bar div { flex: 1; height: 0.8em; background: rgba(127,127,127,0.2); }
.digit-widget .dw-bar div div { height: 100%; width: 0; background: #1f6feb; }
.digit-widget .dw-bar.dw-top div div { background: #d63384; }
.digit-widget .dw-bar span:last-child { width: 3.5em; font-variant-numeric: tabular-nums; }
.digit-widget button { margin-top: 0.5em; padding: 0.25em 1.2em; }`;

  function el(tag, cls, parent) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (parent) parent.appendChild(e);
    return e;
  }

  function mount(root) {
    if (root.dataset.mounted) return;
    root.dataset.mounted = "1";
    root.classList.add("digit-widget");
    root.dataset.state = "loading";
    const draw = el("canvas", "dw-draw", root);
    draw.width = draw.height = CANVAS;
    draw.setAttribute("aria-label", "Drawing area: draw a digit from 0 to 9");
    const side = el("div", "dw-side", root);
    el("div", "dw-caption", side).textContent = "What the network sees (28×28) and reads:";
    const seen = el("div", "", side);
    const preview = el("canvas", "dw-preview", seen);
    preview.width = preview.height = 28;
    preview.title = "The 28×28 image the network reads";
    const digit = el("span", "dw-digit", seen);
    digit.setAttribute("aria-live", "polite");
    const message = el("p", "dw-message", side);
    message.textContent = MESSAGES.loading;
    const bars = [];
    for (let d = 0; d < 10; d++) {
      const row = el("div", "dw-bar", side);
      el("span", "", row).textContent = d;
      const fill = el("div", "", el("div", "", row));
      const value = el("span", "", row);
      bars.push({ row: row, fill: fill, value: value });
    }
    const clear = el("button", "", side);
    clear.type = "button";
    clear.textContent = "Clear";
    const ctx = draw.getContext("2d", { willReadFrequently: true });
    let net = null, last = null, drawing = false;

    function say(text, isError) {
      message.textContent = text;
      message.classList.toggle("dw-error", !!isError);
    }

    function showResult(state, image, probs) {
      const pctx = preview.getContext("2d"), img = pctx.createImageData(28, 28);
      for (let i = 0; i < 784; i++) {
        const v = image ? Math.round(image[i] * 255) : 0;
        img.data.set([v, v, v, 255], 4 * i);
      }
      pctx.putImageData(img, 0, 0);
      const best = probs ? probs.indexOf(Math.max(...probs)) : -1;
      bars.forEach(function (b, d) {
        const p = probs ? probs[d] : 0;
        b.fill.style.width = (100 * p).toFixed(1) + "%";
        b.value.textContent = probs ? (100 * p).toFixed(1) + " %" : "";
        b.row.classList.toggle("dw-top", d === best);
      });
      digit.textContent = probs ? String(best) : "";
      root.dataset.state = state;
      if (probs) {
        root.dataset.digit = String(best);
        root.dataset.probabilities = JSON.stringify(probs);
      } else {
        delete root.dataset.digit;
        delete root.dataset.probabilities;
      }
    }

    function read(startedAt) {
      if (!net) return;
      const pixels = ctx.getImageData(0, 0, CANVAS, CANVAS).data;
      const { image, box } = MnistCnn.toMnist(pixels, CANVAS, CANVAS);
      if (!image) {
        showResult("empty", null, null);
        say(MESSAGES.empty);
      } else if (Math.max(box[1] - box[0], box[3] - box[2]) < MIN_SIDE) {
        showResult("too-small", null, null);
        say(MESSAGES.tooSmall);
      } else {
        const out = MnistCnn.forward(net, image);
        showResult("predicted", image, out.probabilities);
        say("The network reads a " + out.digit + " (" +
            (100 * out.probabilities[out.digit]).toFixed(1) + " % sure).");
      }
      // For the benchmark: lift of the pen -> result in the page, and -> the frame showing it.
      root.dataset.latencyMs = (performance.now() - startedAt).toFixed(2);
      requestAnimationFrame(function () {
        root.dataset.shownMs = (performance.now() - startedAt).toFixed(2);
      });
    }

    function point(ev) {
      const r = draw.getBoundingClientRect();
      return [(ev.clientX - r.left) * CANVAS / r.width, (ev.clientY - r.top) * CANVAS / r.height];
    }

    function segment(a, b) {
      ctx.beginPath();
      ctx.moveTo(a[0], a[1]);
      ctx.lineTo(b[0], b[1]);
      ctx.stroke();
    }

    ctx.strokeStyle = ctx.fillStyle = "#fff";
    ctx.lineWidth = BRUSH;
    ctx.lineCap = ctx.lineJoin = "round";
    draw.addEventListener("pointerdown", function (ev) {
      if (!net || ev.button > 0) return;
      ev.preventDefault();
      draw.setPointerCapture(ev.pointerId);
      drawing = true;
      last = point(ev);
      segment(last, last);                      // a tap leaves a dot
    });
    draw.addEventListener("pointermove", function (ev) {
      if (!drawing) return;
      const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
      for (const e of events.length ? events : [ev]) {
        const p = point(e);
        segment(last, p);
        last = p;
      }
    });
    function end(ev) {
      if (!drawing) return;
      drawing = false;
      read(ev.timeStamp || performance.now());
    }
    draw.addEventListener("pointerup", end);
    draw.addEventListener("pointercancel", end);
    clear.addEventListener("click", function () {
      ctx.clearRect(0, 0, CANVAS, CANVAS);
      if (net) {
        showResult("ready", null, null);
        say(MESSAGES.ready);
      }
    });

    ready.then(function (loaded) {
      net = loaded;
      root.dataset.state = "ready";
      say(MESSAGES.ready);
    }, function (err) {
      root.dataset.state = "error";
      draw.style.opacity = "0.4";
      say("The canvas cannot read digits here: " + err.message + ". The rest of the page works.",
          true);
    });
  }

  function mountAll() {
    if (!document.getElementById("digit-widget-style")) {
      const style = el("style", "", document.head);
      style.id = "digit-widget-style";
      style.textContent = STYLE;
    }
    document.querySelectorAll('[data-testid="digit-widget"]').forEach(mount);
  }

  MnistCnn.ready = ready;
  MnistCnn.loadNetwork = loadNetwork;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})(window.MnistCnn = window.MnistCnn || {});
