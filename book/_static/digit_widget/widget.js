/* The book's digit widget: draw a digit, and watch the network read it, layer
 * by layer, in the page.
 *
 * A page adds <div data-testid="digit-widget"></div> and this script. The
 * script loads, from its own folder, the weights written by
 * `python -m mnist_cnn export-web` (weights.js: a <script> works from disk,
 * where browsers refuse fetch()), the drawing pad (pad.js), the forward pass
 * (forward.js), the preprocessing (preprocess.js) and its style sheet (widget.css). Nothing is
 * fetched from any other host. Every view is built from the export's manifest
 * (its layers, their names and settings), and so is the drawing surface (its
 * canvas entry: mnist_cnn.canvas.CANVAS and BRUSH, the app's): no shape is written here.
 * On a page with the convolution chapter's step-through it also loads stepthrough.js,
 * which takes its own surface from its element (data-canvas, data-brush) and loads
 * no weights.
 *
 * Contract (tests and outside checks rely on it; this is the one place it is named):
 * - the root keeps data-testid="digit-widget"; its first <canvas> is the drawing
 *   surface (role="img", with an aria-label; Escape or Delete clears it when focused),
 *   hidden until the export has loaded, then as its manifest gives it (canvas.size: its
 *   width and height in canvas pixels, and its width on the screen where the page is
 *   that wide; canvas.brush: the pen's width), an export without a usable surface
 *   being refused with a message;
 * - while the pen moves (at most one reading per animation frame) and when it
 *   lifts, the root carries data-digit (0-9) and data-probabilities (a JSON array
 *   of ten numbers), or neither when there is nothing to read; the "Clear" button
 *   (a real <button>) clears the canvas and removes them;
 * - data-state says what the widget shows: loading, ready, predicted, empty,
 *   too-small or error; data-latency-ms and data-shown-ms time the last reading
 *   after the pen lifted (to the result in the page, and to the frame showing it);
 *   data-update-ms is the time of the last update of any kind (preprocessing,
 *   network and the drawing of every view);
 * - each layer's view is an element inside the root with data-layer set to the
 *   layer's name in the manifest (data-layer="input" for the 28x28 input), and
 *   data-updated, a counter that grows with every redraw of that view;
 * - pointing at (mouse, pen) or tapping (touch) a unit of an image view shows
 *   the kernel that made its map (.dw-inspect: data-layer-inspected, data-unit
 *   "map,row,column"; canvas.dw-kernel: data-shape "KH,KW,C_in") and frames the
 *   unit's receptive field on the input view (.dw-rf; the input view's
 *   data-receptive-field is "top,left,size" in input pixels, before clipping to
 *   the image); the inspector moves into the inspected view's figure, below its
 *   picture, with its own copy of the input and frame (.dw-inspect-rf), and the
 *   unit is outlined on its map (.dw-unit), so both stay beside the unit however
 *   far down the page the view is;
 * - the reading after the pen lifts is announced in a polite live region.
 */
(function (MnistCnn) {
  "use strict";

  // The drawing surface's size and brush are the export's (its manifest's canvas entry:
  // mnist_cnn.canvas.CANVAS and BRUSH, the app's); ink spanning less than two brush
  // widths (a dot, a tick) is too small to read.
  const FORMAT = "mnist_cnn-web/3";     // mnist_cnn.web.FORMAT
  const MESSAGES = {
    ready: "Draw a digit (0–9) in the black box: the network reads it as you draw.",
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

  // What is wrong with a drawing surface of `size` canvas pixels and a pen `brush`
  // pixels wide, or null: mnist_cnn.canvas.surface_problem's rule (the size a whole
  // number from 1 to MAX_CANVAS; the brush above 0 and at most a quarter of the size).
  const MAX_CANVAS = 4096;              // mnist_cnn.canvas.MAX_CANVAS
  function surfaceProblem(size, brush) {
    if (!(Number.isInteger(size) && size >= 1 && size <= MAX_CANVAS))
      return "the size must be a whole number of canvas pixels from 1 to " + MAX_CANVAS;
    if (!(Number.isFinite(brush) && brush > 0 && brush <= size / 4))
      return "the brush must be a width above 0 and at most a quarter of the size";
    return null;
  }

  // The drawing surface the payload of weights.js gives: {size, brush}, in canvas
  // pixels; throws an Error saying what is wrong with an export of another format (an
  // older one has no surface), without one or with an unusable one.
  function surfaceOf(payload) {
    const m = payload && payload.manifest;
    if (!m || typeof m.format !== "string")
      throw new Error("weights.js is not a " + FORMAT + " export");
    if (m.format !== FORMAT)
      throw new Error("weights.js is a " + m.format + " export, this page reads " + FORMAT +
                      ": export it again (python -m mnist_cnn export-web, which `make book` runs)");
    const c = m.canvas;
    if (!c || typeof c !== "object")
      throw new Error("the export's manifest gives no drawing surface (canvas.size and " +
                      "canvas.brush, in canvas pixels): export it again " +
                      "(python -m mnist_cnn export-web)");
    const problem = surfaceProblem(c.size, c.brush);
    if (problem)
      throw new Error("the export's manifest gives no usable drawing surface (canvas.size " +
                      "and canvas.brush): " + problem + "; export it again " +
                      "(python -m mnist_cnn export-web)");
    return { size: c.size, brush: c.brush };
  }

  // The payload of weights.js -> {manifest, surface (the drawing surface's {size,
  // brush}), layers (with W and b arrays)}; throws an Error saying what is wrong with a
  // damaged or foreign file.
  async function loadNetwork(payload) {
    const surface = surfaceOf(payload), m = payload.manifest;
    if (typeof payload.data !== "string")
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
      // Each entry is the layer's own description (its get_config in mnist_cnn.scratch):
      // a kernel is (height, width); the page runs square ones, as one number.
      if (Array.isArray(layer.kernel_size)) {
        if (layer.kernel_size[0] !== layer.kernel_size[1])
          throw new Error("layer " + entry.name + ": the page runs square kernels only");
        layer.kernel_size = layer.kernel_size[0];
      }
      for (const w of entry.weights || []) {
        const n = w.shape.reduce((a, d) => a * d, 1);
        if (n !== w.length || w.offset + n > flat.length)
          throw new Error("layer " + entry.name + ": weight " + w.name + " does not fit");
        layer[w.name] = flat.subarray(w.offset, w.offset + n);
      }
      return layer;
    });
    return { manifest: m, surface: surface, layers: layers };
  }

  // The scripts every widget needs, loaded once per page; the network's weights only
  // when something asks for them (MnistCnn.ready: the digit widget, tests, the
  // benchmark), not on a page with only the convolution chapter's step-through.
  const scripts = loadScript("pad.js")
    .then(function () { return loadScript("forward.js"); })
    .then(function () { return loadScript("preprocess.js"); });
  scripts.catch(function () {});
  let network = null;
  function ready() {
    if (network === null) {
      network = scripts.then(function () {
        return loadScript("weights.js").catch(function () {
          throw new Error("the network's weights (weights.js) are missing. Build the book " +
                          "with `make book`, which exports them (python -m mnist_cnn export-web)");
        });
      }).then(function () { return loadNetwork(window.MNIST_CNN_WEIGHTS); });
      network.catch(function () {});     // an unhandled rejection would log an error
    }
    return network;
  }

  // ---------------------------------------------------------------- the views

  const MAP_COLUMNS = 8;       // feature maps per row in a layer's picture
  const STRIP_COLUMNS = 32;    // units per row in a vector's picture (64 for long ones)
  const MAP_SCALE = 3;         // screen pixels per pixel of a feature map...
  const VIEW_WIDTH = 240;      // ...up to this width (a vector's picture: this width)
  const GAP = 60;              // the gray level of the line between maps
  const INSPECT_KEYS = "To inspect a unit, point at it or tap it; or focus this picture " +
    "and move with the arrow keys (Page Up and Page Down: the previous or next map).";

  function el(tag, cls, parent, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  // Where each value of a layer's output goes in its picture: an image output
  // (H, W, C) as C maps of H x W in a grid, 1 px apart; a vector as a strip of cells.
  function layoutOf(shape) {
    const image = shape.length === 3;
    const [H, W, C] = image ? shape : [1, 1, shape[0]];
    const cols = Math.min(C, image ? MAP_COLUMNS : C > 8 * STRIP_COLUMNS ? 2 * STRIP_COLUMNS
                                                                          : STRIP_COLUMNS);
    const gap = image ? 1 : 0;
    const rows = Math.ceil(C / cols);
    return { H: H, W: W, C: C, cols: cols, rows: rows, gap: gap,
             width: cols * (W + gap) - gap, height: rows * (H + gap) - gap };
  }

  // A value as a colour on black, written at px[o..o+3]: positive white, negative
  // blue, 0 black, in proportion to t = value / the largest |value| of the picture.
  function setColour(px, o, t) {
    if (t >= 0) px[o] = px[o + 1] = px[o + 2] = 255 * t;
    else px[o] = -90 * t, px[o + 1] = -160 * t, px[o + 2] = -255 * t;
    px[o + 3] = 255;
  }

  // Paint `data` (laid out as `lay`, channels last) into `canvas`; null paints it blank.
  function paint(canvas, lay, data) {
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(lay.width, lay.height), px = img.data;
    px.fill(lay.gap ? GAP : 0);
    for (let i = 3; i < px.length; i += 4) px[i] = 255;       // opaque
    let top = 0;
    if (data) for (let i = 0; i < data.length; i++) top = Math.max(top, Math.abs(data[i]));
    for (let c = 0; c < lay.C; c++) {
      const x0 = (c % lay.cols) * (lay.W + lay.gap), y0 = Math.floor(c / lay.cols) * (lay.H + lay.gap);
      for (let y = 0; y < lay.H; y++)
        for (let x = 0; x < lay.W; x++) {
          const t = data && top ? data[(y * lay.W + x) * lay.C + c] / top : 0;
          setColour(px, 4 * ((y0 + y) * lay.width + x0 + x), t);
        }
    }
    ctx.putImageData(img, 0, 0);
  }

  // The unit of a picture under a pointer: {c: map, y: row, x: column}, or null
  // on a gap or outside.
  function unitAt(canvas, lay, ev) {
    const r = canvas.getBoundingClientRect();
    const px = (ev.clientX - r.left) * lay.width / r.width;
    const py = (ev.clientY - r.top) * lay.height / r.height;
    const col = Math.floor(px / (lay.W + lay.gap)), row = Math.floor(py / (lay.H + lay.gap));
    const x = Math.floor(px - col * (lay.W + lay.gap)), y = Math.floor(py - row * (lay.H + lay.gap));
    const c = row * lay.cols + col;
    if (col < 0 || col >= lay.cols || x < 0 || x >= lay.W || y < 0 || y >= lay.H ||
        c < 0 || c >= lay.C) return null;
    return { c: c, y: y, x: x };
  }

  // What a layer's picture shows, in words (its caption and its label).
  // A layer's caption: what it outputs (`shape`) and computes, from the manifest; `given`
  // is the shape it is given and `next` the layer after it (undefined for the last).
  function describe(layer, shape, given, next) {
    const n = shape.length === 3 ? shape[2] + " maps of " + shape[0] + "×" + shape[1]
                                 : shape[0] + " values";
    const k = layer.kernel_size, channels = given.length === 3 ? given[2] : 1;
    const what = {
      Conv2D: "convolution with " + layer.filters + " filters of " + k + "×" + k +
              (channels > 1 ? "×" + channels : "") +
              (layer.strides > 1 ? ", stride " + layer.strides : "") +
              (next && next.class === "ReLU" ? ", before ReLU" : ""),
      ReLU: "ReLU: the negative values set to 0",
      MaxPooling2D: "max pooling: the largest value of each " + layer.pool_size + "×" +
                    layer.pool_size + " window",
      Flatten: "flattened: the same values in one row",
      Dense: "dense layer, every unit a weighted sum of all the values before",
    }[layer.class] || layer.class;
    return layer.name + ": " + n + ", " + what;
  }

  // ---------------------------------------------------------------- the widget

  function mount(root) {
    if (root.dataset.mounted) return;
    root.dataset.mounted = "1";
    root.classList.add("digit-widget");
    root.dataset.state = "loading";
    const main = el("div", "dw-main", root);
    const draw = el("canvas", "dw-draw", main);      // sized by the export, once loaded
    draw.hidden = true;                              // no surface of a guessed size till then
    draw.tabIndex = 0;
    draw.setAttribute("role", "img");
    draw.setAttribute("aria-label", "Drawing area: draw a digit from 0 to 9 with the mouse, " +
                      "a pen or a finger. Escape or Delete clears it.");
    const side = el("div", "dw-side", main);
    el("p", "dw-caption", side).textContent = "What the network sees (28×28) and reads:";
    const seen = el("div", "dw-seen", side);
    const inputView = el("figure", "dw-view", seen);
    inputView.dataset.layer = "input";
    const inputBox = el("div", "dw-input-box", inputView);
    const preview = el("canvas", "dw-preview", inputBox);
    preview.width = preview.height = 28;
    preview.setAttribute("role", "img");
    preview.setAttribute("aria-label", "The 28×28 image the network reads");
    const rf = el("div", "dw-rf", inputBox);
    rf.hidden = true;
    el("figcaption", "", inputView).textContent = "input: 28×28";
    const digit = el("span", "dw-digit", seen);
    const message = el("p", "dw-message", side);
    message.textContent = MESSAGES.loading;
    const live = el("p", "dw-sr", side);
    live.setAttribute("role", "status");
    live.setAttribute("aria-live", "polite");
    const barsView = el("figure", "dw-view", side);
    const bars = [];
    for (let d = 0; d < 10; d++) {
      const row = el("div", "dw-bar", barsView);
      el("span", "", row).textContent = d;
      const fill = el("div", "", el("div", "", row));
      const value = el("span", "", row);
      bars.push({ row: row, fill: fill, value: value });
    }
    el("figcaption", "", barsView).textContent = "The probability of each digit.";
    const clear = el("button", "", side);
    clear.type = "button";
    clear.textContent = "Clear";
    // The inspector: it waits here, empty, until a unit is inspected, then moves
    // into that unit's view (below its picture), where the reader is looking.
    const inspector = el("div", "dw-inspect", side);
    const kernel = el("canvas", "dw-kernel", inspector);
    kernel.hidden = true;
    kernel.setAttribute("role", "img");
    const inspectInput = el("div", "dw-input-box dw-inspect-input", inspector);
    inspectInput.hidden = true;
    const inputCopy = el("canvas", "dw-preview-copy", inspectInput);
    inputCopy.width = inputCopy.height = 28;
    inputCopy.setAttribute("role", "img");
    inputCopy.setAttribute("aria-label", "The 28×28 input, the unit's receptive field framed");
    const rfCopy = el("div", "dw-inspect-rf", inspectInput);
    const inspectText = el("p", "", inspector);
    inspectText.setAttribute("aria-live", "polite");
    const layersBox = el("div", "dw-layers", root);
    const unitMark = el("div", "dw-unit");          // the inspected unit, outlined on its map
    unitMark.hidden = true;
    const ctx = draw.getContext("2d", { willReadFrequently: true });
    let net = null, pad = null, fields = {}, minSide = 0;
    const views = [];           // {layer, el, canvas, lay} for every layer but the last

    function say(text, isError) {
      message.textContent = text;
      message.classList.toggle("dw-error", !!isError);
    }

    function bump(view) {
      view.dataset.updated = String(Number(view.dataset.updated || 0) + 1);
    }

    // One picture per layer of the manifest, sized by one pass of a blank image.
    function buildViews() {
      const pixels = net.manifest.input_shape.reduce((a, d) => a * d, 1);
      const outputs = MnistCnn.forward(net, new Float32Array(pixels)).outputs;
      const layers = net.layers, lastLayer = layers[layers.length - 1];
      el("p", "", layersBox).textContent = "Inside the network, layer by layer (white: " +
        "positive, blue: negative, black: 0; each picture scaled to its largest value). " +
        "Point at or tap a feature map to see the kernel that made it and, framed on the " +
        "28×28 input, the pixels that one of its units sees.";
      layers.forEach(function (layer, i) {
        if (layer === lastLayer) {            // the softmax: the ten bars above
          barsView.dataset.layer = layer.name;
          barsView.lastChild.textContent = layer.name + ": the probability of each digit.";
          return;
        }
        const shape = outputs[layer.name].shape, lay = layoutOf(shape);
        const fig = el("figure", "dw-view", layersBox);
        fig.dataset.layer = layer.name;
        const box = el("div", "dw-map-box", fig);         // the picture, and its unit's outline
        const canvas = el("canvas", "dw-maps", box);
        canvas.width = lay.width;
        canvas.height = lay.height;
        box.style.setProperty("--dw-width", (lay.gap ? Math.min(VIEW_WIDTH, MAP_SCALE * lay.width)
                                                     : VIEW_WIDTH) + "px");
        canvas.setAttribute("role", "img");
        const given = i ? outputs[layers[i - 1].name].shape : net.manifest.input_shape;
        const words = describe(layer, shape, given, layers[i + 1]);
        el("figcaption", "", fig).textContent = words;
        canvas.setAttribute("aria-label", words);
        const view = { layer: layer, el: fig, box: box, canvas: canvas, lay: lay };
        views.push(view);
        if (fields[layer.name]) {
          canvas.setAttribute("aria-label", words + ". " + INSPECT_KEYS);
          listenForInspection(view);
        }
      });
    }

    // Point at (mouse, pen) or tap (touch) a unit of a feature map to inspect it; or
    // focus the picture and move through its units with the keyboard.
    function listenForInspection(view) {
      const canvas = view.canvas, lay = view.lay;
      view.unit = { c: 0, y: lay.H >> 1, x: lay.W >> 1 };
      const pick = function (ev) {
        const unit = unitAt(canvas, lay, ev);
        // A hovering mouse is not scrolled away from; a tap brings the inspector into view.
        if (unit) inspect(view, view.unit = unit, ev.type === "pointerdown" &&
                                                  ev.pointerType === "touch");
      };
      canvas.addEventListener("pointermove", pick);       // mouse and pen hover
      canvas.addEventListener("pointerdown", pick);       // a tap
      canvas.tabIndex = 0;
      canvas.addEventListener("focus", function () { inspect(view, view.unit, true); });
      canvas.addEventListener("keydown", function (ev) {
        const step = { ArrowUp: [0, -1, 0], ArrowDown: [0, 1, 0], ArrowLeft: [0, 0, -1],
                       ArrowRight: [0, 0, 1], PageUp: [-1, 0, 0], PageDown: [1, 0, 0] }[ev.key];
        if (!step) return;
        ev.preventDefault();
        const u = view.unit, within = (v, n) => Math.min(Math.max(v, 0), n - 1);
        view.unit = { c: within(u.c + step[0], lay.C), y: within(u.y + step[1], lay.H),
                      x: within(u.x + step[2], lay.W) };
        inspect(view, view.unit, true);
      });
    }

    // The kernel behind a unit of a feature map, and the unit's receptive field, shown
    // beside the unit (below its picture); `reveal` scrolls them into view if needed.
    function inspect(view, unit, reveal) {
      const field = fields[view.layer.name], i = net.layers.indexOf(view.layer);
      const top = field.start + unit.y * field.jump, left = field.start + unit.x * field.jump;
      const [H, W] = net.manifest.input_shape;
      const frame = { top: (100 * top / H) + "%", left: (100 * left / W) + "%",
                      height: (100 * field.size / H) + "%", width: (100 * field.size / W) + "%" };
      Object.assign(rf.style, frame);
      Object.assign(rfCopy.style, frame);
      rf.hidden = false;
      inspectInput.hidden = false;
      const lay = view.lay;
      Object.assign(unitMark.style, {
        left: (100 * ((unit.c % lay.cols) * (lay.W + lay.gap) + unit.x) / lay.width) + "%",
        top: (100 * (Math.floor(unit.c / lay.cols) * (lay.H + lay.gap) + unit.y) / lay.height) + "%",
        width: (100 / lay.width) + "%", height: (100 / lay.height) + "%" });
      if (unitMark.parentNode !== view.box) view.box.appendChild(unitMark);
      unitMark.hidden = false;
      if (inspector.parentNode !== view.el) view.el.appendChild(inspector);
      if (reveal) inspector.scrollIntoView({ block: "nearest", inline: "nearest" });
      inputView.dataset.receptiveField = [top, left, field.size].join(",");
      inspector.dataset.layerInspected = view.layer.name;
      inspector.dataset.unit = [unit.c, unit.y, unit.x].join(",");
      const where = "Unit (row " + unit.y + ", column " + unit.x + ") of map " + unit.c +
        " of " + view.layer.name + " sees the " + field.size + "×" + field.size +
        " input pixels framed in yellow (on the input beside this text and at the top).";
      // ReLU and pooling keep the maps: map c comes from filter c of the last convolution.
      const conv = net.layers.slice(0, i + 1).reverse().find((l) => l.class === "Conv2D");
      if (!conv) {
        kernel.hidden = true;
        inspectText.textContent = where;
        return;
      }
      const K = conv.kernel_size, C = conv.W.length / (K * K * conv.filters), F = conv.filters;
      const slice = new Float32Array(K * K * C);       // W[:, :, :, c], laid out (K, K, C)
      for (let j = 0; j < slice.length; j++) slice[j] = conv.W[j * F + unit.c];
      const klay = layoutOf([K, K, C]);
      kernel.width = klay.width;
      kernel.height = klay.height;
      paint(kernel, klay, slice);
      kernel.dataset.shape = [K, K, C].join(",");
      kernel.hidden = false;
      const values = C === 1 ? " Its weights, row by row: " +
        Array.from(slice, (v) => v.toFixed(2)).join(", ") + "." : "";
      // The weights the page runs: as exported (the export may have folded a BatchNorm
      // into them, which the manifest does not record), in the manifest's dtype.
      const exported = " (weights as exported, in " + net.manifest.dtype + ")";
      const words = C === 1
        ? "The " + K + "×" + K + " kernel of " + conv.name + "'s filter " + unit.c + exported +
          ", which made map " + unit.c + "."
        : "The kernel of " + conv.name + "'s filter " + unit.c + exported + ", which made map " +
          unit.c + ": " + K + "×" + K + "×" + C + ", shown as " + C + " slices of " + K + "×" + K +
          ", one per map of the layer before it.";
      kernel.setAttribute("aria-label", words + values);
      inspectText.textContent = words + " " + where;
    }

    // Draw the input, every layer's output (or blanks) and, when `reading`, the bars.
    function show(image, out, reading) {
      const pctx = preview.getContext("2d"), img = pctx.createImageData(28, 28);
      for (let i = 0; i < 784; i++) {
        const v = image ? Math.round(image[i] * 255) : 0;
        img.data.set([v, v, v, 255], 4 * i);
      }
      pctx.putImageData(img, 0, 0);
      inputCopy.getContext("2d").putImageData(img, 0, 0);
      bump(inputView);
      for (const view of views) {
        paint(view.canvas, view.lay, out ? out.outputs[view.layer.name].data : null);
        bump(view.el);
      }
      const probs = reading ? out.probabilities : null;
      const best = probs ? out.digit : -1;
      bars.forEach(function (b, d) {
        const p = probs ? probs[d] : 0;
        b.fill.style.width = (100 * p).toFixed(1) + "%";
        b.value.textContent = probs ? (100 * p).toFixed(1) + " %" : "";
        b.row.classList.toggle("dw-top", d === best);
      });
      if (barsView.dataset.layer) bump(barsView);
      digit.textContent = probs ? String(best) : "";
      if (probs) {
        root.dataset.digit = String(best);
        root.dataset.probabilities = JSON.stringify(probs);
      } else {
        delete root.dataset.digit;
        delete root.dataset.probabilities;
      }
    }

    // Read the canvas: while drawing (`final` false) and when the pen lifts.
    function read(final, startedAt) {
      if (!net) return;
      const t0 = performance.now();
      const pixels = ctx.getImageData(0, 0, draw.width, draw.height).data;
      const { image, box } = MnistCnn.toMnist(pixels, draw.width, draw.height);
      const tooSmall = image && Math.max(box[1] - box[0], box[3] - box[2]) < minSide;
      if (image && !tooSmall) {
        const out = MnistCnn.forward(net, image);
        show(image, out, true);
        root.dataset.state = "predicted";
        const text = "The network reads a " + out.digit + " (" +
          (100 * out.probabilities[out.digit]).toFixed(1) + " % sure).";
        say(text);
        if (final) live.textContent = text;
      } else if (!final) {
        // The pen is still down: the layers show a drawing too small to read, the
        // reading waits until it is big enough (or the pen lifts).
        if (image) show(image, MnistCnn.forward(net, image), false);
      } else {
        show(null, null, false);
        root.dataset.state = image ? "too-small" : "empty";
        say(image ? MESSAGES.tooSmall : MESSAGES.empty);
        live.textContent = message.textContent;
      }
      root.dataset.updateMs = (performance.now() - t0).toFixed(2);
      if (!final) return;
      // For the benchmark: lift of the pen -> result in the page, and -> the frame showing it.
      root.dataset.latencyMs = (performance.now() - startedAt).toFixed(2);
      requestAnimationFrame(function () {
        root.dataset.shownMs = (performance.now() - startedAt).toFixed(2);
      });
    }

    function clearAll() {
      ctx.clearRect(0, 0, draw.width, draw.height);
      if (pad) pad.cancel();
      if (!net) return;
      show(null, null, false);
      root.dataset.state = "ready";
      say(MESSAGES.ready);
      live.textContent = "Cleared.";
    }

    draw.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" || ev.key === "Delete") {
        ev.preventDefault();
        clearAll();
      }
    });
    clear.addEventListener("click", clearAll);

    ready().then(function (loaded) {
      net = loaded;
      // The drawing surface the export gives, shown at its size (narrower on a phone).
      draw.width = draw.height = net.surface.size;
      draw.style.width = net.surface.size + "px";
      draw.hidden = false;
      minSide = 2 * net.surface.brush;
      // Read while the pen moves (at most once a frame) and when it lifts.
      pad = MnistCnn.drawingPad(draw, net.surface.brush, function () { read(false); },
                                function (t) { read(true, t); });
      fields = MnistCnn.receptiveFields(net);
      buildViews();
      // The widget is now taller than a screen: scrolling it into view (a link to it,
      // a test's scrollIntoView) brings its drawing surface to the middle, as before.
      new ResizeObserver(function () {
        root.style.scrollMarginBottom = (draw.getBoundingClientRect().bottom -
                                         root.getBoundingClientRect().bottom) + "px";
      }).observe(root);
      show(null, null, false);
      root.dataset.state = "ready";
      say(MESSAGES.ready);
    }, function (err) {
      root.dataset.state = "error";                 // the surface stays hidden
      say("The canvas cannot read digits here: " + err.message + ". The rest of the page works.",
          true);
    });
  }

  function mountAll() {
    if (!document.getElementById("digit-widget-style")) {
      const link = el("link", "", document.head);
      link.id = "digit-widget-style";
      link.rel = "stylesheet";
      link.href = base + "widget.css";
    }
    document.querySelectorAll('[data-testid="digit-widget"]').forEach(mount);
    if (document.querySelector('[data-testid="conv-stepthrough"]'))
      loadScript("stepthrough.js").catch(function (err) {
        document.querySelectorAll('[data-testid="conv-stepthrough"]').forEach(function (r) {
          r.dataset.state = "error";
          r.textContent = "The step-through cannot run here: " + err.message + ".";
        });
      });
  }

  Object.defineProperty(MnistCnn, "ready", { get: ready, configurable: true });
  MnistCnn.loadNetwork = loadNetwork;
  MnistCnn.scripts = scripts;        // for stepthrough.js, which widget.js loads
  MnistCnn.el = el;
  MnistCnn.surfaceProblem = surfaceProblem;   // for stepthrough.js: one rule for both pads
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})(window.MnistCnn = window.MnistCnn || {});
