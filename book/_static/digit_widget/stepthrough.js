/* The convolution chapter's step-through: draw a digit, pick a 3 x 3 kernel,
 * and move the window over the 28 x 28 image the network would see, with the
 * nine products and their sum at each position.
 *
 * A page adds <div data-testid="conv-stepthrough" data-kernels="..."
 * data-canvas="..." data-brush="..."></div> and widget.js, which loads this script
 * when the page has such an element, after the drawing pad (pad.js), the
 * preprocessing (preprocess.js) and the forward pass (forward.js), and loads no
 * weights for it. The chapter's code cell writes the element with
 * mnist_cnn.web.stepthrough_html: data-kernels is a JSON object, kernel name -> its
 * nine weights row by row (the kernels the cell defines); data-canvas and
 * data-brush are the drawing surface's size and brush width, in canvas pixels
 * (mnist_cnn.canvas.CANVAS and BRUSH, the app's and the digit widget's). The output
 * map is forward.js's conv2d (the network's own convolution), and the sum shown is
 * its output at the window's position. Nothing is fetched from any other host.
 *
 * Contract (the tests rely on it): the root's first <canvas> is the drawing
 * surface, data-canvas pixels square, drawn on with a data-brush-wide pen; the root
 * carries data-state (loading, ready, drawn, empty or error: no kernels, no drawing
 * surface (an element written by an older library), an unusable one (widget.js'
 * MnistCnn.surfaceProblem, mnist_cnn.canvas.surface_problem's rule) or no scripts,
 * each said in a message, the rest of the page working),
 * data-kernel (the kernel's name) and data-weights (its nine weights, row by row,
 * as JSON), data-position ("row,column": the window's
 * top-left corner, also the output's position) and, once a digit is drawn,
 * data-sum (the output there, unrounded); root.convImage is the 28x28 image.
 * The table shows pixels, weights and products to 3 decimals (the sum is of the
 * unrounded products); the output map is scaled to the whole map's largest |value|
 * (computed at once), so a shown cell keeps its colour as the window moves; the
 * slider's aria-valuetext is "row i, column j".
 */
(function (MnistCnn) {
  "use strict";

  const SIZE = 28;                         // the image the network sees
  const K = 3;

  // The page's kernels (data-kernels): name -> K * K finite weights, row by row.
  function kernelsOf(root) {
    let k = null;
    try { k = JSON.parse(root.dataset.kernels || ""); } catch (e) { k = null; }
    const ok = k !== null && typeof k === "object" && Object.keys(k).length > 0 &&
      Object.values(k).every((w) => Array.isArray(w) && w.length === K * K &&
                                    w.every(Number.isFinite));
    if (!ok) throw new Error("the page gives no " + K + "×" + K + " kernels (data-kernels)");
    return k;
  }

  // The page's drawing surface (data-canvas, data-brush) -> {size, brush}, in canvas
  // pixels, by widget.js's rule (MnistCnn.surfaceProblem, loaded before this script
  // runs); throws an Error saying what is missing or wrong.
  function surfaceOf(root) {
    const given = root.dataset.canvas, pen = root.dataset.brush;
    if (given === undefined && pen === undefined)
      throw new Error("the page gives no drawing surface (data-canvas and data-brush, in " +
                      "canvas pixels), as an element written by an older version of " +
                      "mnist_cnn: re-run the chapter to write it again (in the book: " +
                      "rebuild it, `make book`)");
    const size = Number(given), brush = Number(pen);
    const problem = (given === undefined || pen === undefined)
      ? "it needs both" : MnistCnn.surfaceProblem(size, brush);
    if (problem)
      throw new Error("the page gives no usable drawing surface (data-canvas and " +
                      "data-brush, in canvas pixels): " + problem);
    return { size: size, brush: brush };
  }

  if (!MnistCnn.scripts) {
    // Loaded on its own (a page from before widget.js loaded it): load widget.js,
    // which loads this script again once its helpers are there.
    const s = document.createElement("script");
    s.src = (document.currentScript && document.currentScript.src || "")
      .replace(/[^/]*$/, "") + "widget.js";
    document.head.appendChild(s);
    return;
  }
  const el = MnistCnn.el, ready = MnistCnn.scripts;     // from widget.js, which loads this

  // A number to 3 decimals, with no "-0.000" for a tiny negative value.
  function fixed3(v) {
    const s = v.toFixed(3);
    return Number(s) === 0 ? (0).toFixed(3) : s;
  }

  // A gray picture of `values` (in [0, 1]) or a signed one (white +, blue -), the
  // signed one scaled to `top` (its largest |value| if not given); NaN paints black.
  function paint(canvas, values, signed, top) {
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(canvas.width, canvas.height);
    if (top === undefined) {
      top = 0;
      for (const v of values) if (!Number.isNaN(v)) top = Math.max(top, Math.abs(v));
    }
    values.forEach(function (v, i) {
      const t = Number.isNaN(v) ? 0 : signed ? (top ? v / top : 0) : v;
      img.data.set(t >= 0 ? [255 * t, 255 * t, 255 * t, 255] : [-90 * t, -160 * t, -255 * t, 255],
                   4 * i);
    });
    ctx.putImageData(img, 0, 0);
  }

  function mount(root) {
    if (root.dataset.mounted) return;
    root.dataset.mounted = "1";
    root.classList.add("conv-stepthrough");
    let kernels, surface;
    try {
      kernels = kernelsOf(root);
      surface = surfaceOf(root);
    } catch (err) {
      root.dataset.state = "error";
      el("p", "cs-message", root, "The step-through cannot run here: " + err.message +
         ". The rest of the page works.");
      return;
    }
    root.dataset.state = "loading";
    const row = el("div", "cs-row", root);
    const draw = el("canvas", "cs-draw", row);
    draw.width = draw.height = surface.size;
    draw.setAttribute("role", "img");
    draw.setAttribute("aria-label", "Drawing area: draw a digit from 0 to 9 with the mouse, " +
                      "a pen or a finger");
    // A picture with a frame over it, and its caption: the input with the window, the
    // output with the cell the window fills.
    const view = () => {
      const fig = el("figure", "cs-view", row);
      const box = el("div", "cs-box", fig);
      const canvas = el("canvas", "cs-image", box);
      canvas.setAttribute("role", "img");
      return {canvas, frame: el("div", "cs-frame", box), caption: el("figcaption", "", fig)};
    };
    const {canvas: input, frame, caption: inputCaption} = view();
    input.width = input.height = SIZE;
    input.setAttribute("aria-label", "Your digit as the network sees it, 28×28, with the " +
                       "window framed");
    inputCaption.textContent = "Your digit, 28×28, and the 3×3 window";
    const {canvas: output, frame: cell, caption: outputCaption} = view();

    const controls = el("div", "cs-controls", root);
    const kernelLabel = el("label", "", controls, "Kernel ");
    const select = el("select", "", kernelLabel);
    for (const name of Object.keys(kernels)) el("option", "", select, name).value = name;
    const positionLabel = el("label", "", controls, "Position ");
    const slider = el("input", "", positionLabel);
    slider.type = "range";
    slider.min = 0;
    const previous = el("button", "", controls, "◀ Previous");
    const next = el("button", "", controls, "Next ▶");
    const clear = el("button", "", controls, "Clear");
    [previous, next, clear].forEach((b) => { b.type = "button"; });
    const table = el("table", "cs-products", root);
    table.setAttribute("aria-label", "The window's nine pixels times the kernel's weights");
    const cells = [];
    for (let u = 0; u < K; u++) {
      const tr = el("tr", "", table);
      for (let v = 0; v < K; v++) cells.push(el("td", "", tr));
    }
    const sumLine = el("p", "cs-sum", root);
    sumLine.setAttribute("aria-live", "polite");
    const message = el("p", "cs-message", root, "Loading…");
    const ctx = draw.getContext("2d", { willReadFrequently: true });
    let image = null, out = null, OH = 0, OW = 0, pad = null;

    function kernel() { return kernels[select.value]; }

    // The output map of the whole image: forward.js's Conv2D with one 3x3 filter.
    function convolve() {
      const layer = { kernel_size: K, strides: 1, padding: "valid", filters: 1,
                      W: Float32Array.from(kernel()), b: new Float32Array(1) };
      return MnistCnn.ops.Conv2D({ data: image, shape: [SIZE, SIZE, 1] }, layer);
    }

    function show() {
      const p = Number(slider.value), i = Math.floor(p / OW), j = p % OW, w = kernel();
      root.dataset.kernel = select.value;
      root.dataset.weights = JSON.stringify(w);
      root.dataset.position = i + "," + j;
      Object.assign(frame.style, { top: (100 * i / SIZE) + "%", left: (100 * j / SIZE) + "%",
                                   width: (100 * K / SIZE) + "%", height: (100 * K / SIZE) + "%" });
      Object.assign(cell.style, { top: (100 * i / OH) + "%", left: (100 * j / OW) + "%",
                                  width: (100 / OW) + "%", height: (100 / OH) + "%" });
      paint(input, image ? Array.from(image) : new Array(SIZE * SIZE).fill(0), false);
      slider.setAttribute("aria-valuetext", "row " + i + ", column " + j);
      // The output so far: the positions the window has visited, in raster order, on
      // the scale of the whole map (so a cell keeps its colour as the window moves).
      let top = 0;
      if (image) for (const v of out.data) top = Math.max(top, Math.abs(v));
      paint(output, Array.from({ length: OH * OW },
                               (_, q) => image && q <= p ? out.data[q] : NaN), true, top);
      for (let u = 0; u < K; u++)
        for (let v = 0; v < K; v++) {
          const x = image ? image[(i + u) * SIZE + j + v] : 0, k = w[u * K + v];
          cells[u * K + v].textContent = fixed3(x) + " × " + fixed3(k) + " = " + fixed3(x * k);
        }
      if (image) {
        const sum = out.data[p];
        root.dataset.sum = String(sum);
        sumLine.textContent = "Sum of the nine products (+ bias 0) = " + sum.toFixed(4) +
          ": the output at row " + i + ", column " + j + ". The sum is of the unrounded " +
          "products: the 3-decimal ones shown may add up to a slightly different number.";
      } else {
        delete root.dataset.sum;
        sumLine.textContent = "";
      }
    }

    function read() {
      const pixels = ctx.getImageData(0, 0, draw.width, draw.height).data;
      image = MnistCnn.toMnist(pixels, draw.width, draw.height).image;
      root.convImage = image;
      if (image) {
        out = convolve();
        root.dataset.state = "drawn";
        message.textContent = "Move the window with the slider or the buttons; pick another " +
          "kernel to see what it responds to.";
      } else {
        root.dataset.state = "empty";
        message.textContent = "No digit found: draw one in the black box.";
      }
      show();
    }

    function step(by) {
      slider.value = Math.min(Math.max(Number(slider.value) + by, 0), OH * OW - 1);
      show();
    }

    ready.then(function () {
      const g = MnistCnn.ops.Conv2D({ data: new Float32Array(SIZE * SIZE), shape: [SIZE, SIZE, 1] },
                                    { kernel_size: K, strides: 1, padding: "valid", filters: 1,
                                      W: new Float32Array(K * K), b: new Float32Array(1) });
      [OH, OW] = g.shape;
      output.width = OW;
      output.height = OH;
      output.setAttribute("aria-label", "The output map, " + OH + "×" + OW +
                          ", filled in up to the window's position");
      outputCaption.textContent = "The output, " + OH + "×" + OW + " (" + SIZE + " − " + K +
        " + 1), so far. ";
      el("span", "cs-legend", outputCaption, "White: positive, blue: negative, black: 0 " +
         "(or not reached yet); scaled to the whole map's largest |value|.");
      slider.max = OH * OW - 1;
      slider.value = (OH >> 1) * OW + (OW >> 1);
      pad = MnistCnn.drawingPad(draw, surface.brush, read, read);
      select.addEventListener("change", function () { if (image) out = convolve(); show(); });
      slider.addEventListener("input", show);
      previous.addEventListener("click", function () { step(-1); });
      next.addEventListener("click", function () { step(1); });
      clear.addEventListener("click", function () {
        pad.cancel();
        ctx.clearRect(0, 0, draw.width, draw.height);
        image = out = root.convImage = null;
        root.dataset.state = "ready";
        message.textContent = "Draw a digit in the black box.";
        show();
      });
      root.dataset.state = "ready";
      message.textContent = "Draw a digit in the black box.";
      show();
    }, function (err) {
      root.dataset.state = "error";
      message.textContent = "The step-through cannot run here: " + err.message +
        ". The rest of the page works.";
    });
  }

  document.querySelectorAll('[data-testid="conv-stepthrough"]').forEach(mount);
})(window.MnistCnn = window.MnistCnn || {});
