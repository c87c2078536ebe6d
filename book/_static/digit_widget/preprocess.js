/* From the drawing to the 28 x 28 image the network reads: a line-by-line
 * port of mnist_cnn.preprocess.to_mnist (read that module for the reasons).
 *
 *   1. inkMap   RGBA pixels -> ink in [0, 1] (opacity on a transparent canvas;
 *               otherwise the deviation from the border's median gray level),
 *               stretched so the strongest ink is 1, weak ink (< 0.2) dropped;
 *   2. bbox     crop to the ink;
 *   3. fitBox   strokes far thicker than MNIST's eroded (thin), then the longer
 *               side scaled to 20 px (Pillow's BOX filter when shrinking,
 *               BILINEAR when enlarging, mirrored exactly), peak stretched to 1;
 *   4. centre   pasted into 28 x 28 with the centre of mass at (14, 14).
 *
 * The same constants as the Python module; numbers are float64 where NumPy's
 * are and float32 where Pillow's are, so both give the same pixels.
 */
(function (MnistCnn) {
  "use strict";

  const SIZE = 28, BOX = 20, CENTRE = 14.0;
  const INK_THRESHOLD = 0.2, MIN_CONTRAST = 0.05;
  const THICK_FRACTION = 0.26, STROKE_FRACTION = 0.20, UNIFORM_STROKE = 0.1;

  // Python's round(): halves go to the even neighbour.
  function roundHalfEven(v) {
    const r = Math.round(v);
    return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  function median(values) {
    const s = Float64Array.from(values).sort(), n = s.length, m = n >> 1;
    return n % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }

  function stretch(ink) {
    let peak = 0;
    for (const v of ink) if (v > peak) peak = v;
    if (peak < MIN_CONTRAST) return ink.fill(0);
    for (let i = 0; i < ink.length; i++) {
      ink[i] = ink[i] / peak;
      if (ink[i] < INK_THRESHOLD) ink[i] = 0;
    }
    return ink;
  }

  // Median of a frame ~2 % of the size wide around the picture: the background.
  function borderMedian(gray, w, h) {
    const k = Math.max(1, roundHalfEven(0.02 * Math.min(h, w)));
    if (2 * k >= Math.min(h, w)) return median(gray);
    const frame = [];
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        if (y < k || y >= h - k || x < k || x >= w - k) frame.push(gray[y * w + x]);
    return median(frame);
  }

  // Step 1 (mnist_cnn.preprocess.ink_map for RGBA input).
  function inkMap(rgba, w, h) {
    const n = w * h, gray = new Float64Array(n), alpha = new Float64Array(n);
    let amin = Infinity, amax = -Infinity;
    for (let i = 0; i < n; i++) {
      const r = rgba[4 * i] / 255, g = rgba[4 * i + 1] / 255, b = rgba[4 * i + 2] / 255;
      gray[i] = r * 0.299 + g * 0.587 + b * 0.114;    // ITU-R 601 luma
      alpha[i] = rgba[4 * i + 3] / 255;
      if (alpha[i] < amin) amin = alpha[i];
      if (alpha[i] > amax) amax = alpha[i];
    }
    if (amin < 0.99) {
      // Opaque pixels of one colour (brush strokes): the opacity is the ink.
      const half = (amin + amax) / 2, solid = [];
      for (let i = 0; i < n; i++) if (alpha[i] > half) solid.push(gray[i]);
      let lo = Infinity, hi = -Infinity;
      for (const v of solid) { if (v < lo) lo = v; if (v > hi) hi = v; }
      if (!solid.length || hi - lo < UNIFORM_STROKE)
        return stretch(alpha.map((a) => a - amin));
      const bgOpaque = median(solid);
      for (let i = 0; i < n; i++) gray[i] = alpha[i] * gray[i] + (1 - alpha[i]) * bgOpaque;
    }
    // Ink darker or lighter than the background, whichever deviates most.
    const bg = borderMedian(gray, w, h);
    let darkMax = -Infinity, lightMax = -Infinity;
    for (const v of gray) {
      if (bg - v > darkMax) darkMax = bg - v;
      if (v - bg > lightMax) lightMax = v - bg;
    }
    const sign = darkMax > lightMax ? -1 : 1;
    return stretch(gray.map((v) => Math.max(sign * (v - bg), 0)));
  }

  // Step 2: [top, bottom, left, right) of the ink, or null.
  function bbox(ink, w, h) {
    let top = h, bottom = -1, left = w, right = -1;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        if (ink[y * w + x] !== 0) {
          if (y < top) top = y;
          if (y > bottom) bottom = y;
          if (x < left) left = x;
          if (x > right) right = x;
        }
    return bottom < 0 ? null : [top, bottom + 1, left, right + 1];
  }

  // Pillow's resampling filters and its two-pass resize of a float image
  // (horizontal pass, then vertical; coefficients in float64, pixels float32).
  const FILTERS = {
    box: { support: 0.5, f: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
    bilinear: { support: 1.0, f: (x) => { x = Math.abs(x); return x < 1 ? 1 - x : 0; } },
  };

  function coefficients(inSize, outSize, filter) {
    const scale = inSize / outSize, fscale = Math.max(scale, 1);
    const support = filter.support * fscale, ss = 1 / fscale, rows = [];
    for (let o = 0; o < outSize; o++) {
      const centre = (o + 0.5) * scale;
      const xmin = Math.max(Math.trunc(centre - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(centre + support + 0.5), inSize);
      const k = [];
      let ww = 0;
      for (let x = xmin; x < xmax; x++) {
        const v = filter.f((x - centre + 0.5) * ss);
        k.push(v);
        ww += v;
      }
      rows.push({ start: xmin, k: ww !== 0 ? k.map((v) => v / ww) : k });
    }
    return rows;
  }

  function resize(a, h, w, nh, nw) {
    const filter = nh <= h && nw <= w ? FILTERS.box : FILTERS.bilinear;
    let src = Float32Array.from(a), sw = w;
    if (nw !== w) {                                   // horizontal pass
      const cs = coefficients(w, nw, filter), out = new Float32Array(h * nw);
      for (let y = 0; y < h; y++)
        for (let x = 0; x < nw; x++) {
          let s = 0;
          cs[x].k.forEach((c, i) => { s += src[y * sw + cs[x].start + i] * c; });
          out[y * nw + x] = s;
        }
      src = out;
      sw = nw;
    }
    if (nh !== h) {                                   // vertical pass
      const cs = coefficients(h, nh, filter), out = new Float32Array(nh * sw);
      for (let y = 0; y < nh; y++)
        for (let x = 0; x < sw; x++) {
          let s = 0;
          cs[y].k.forEach((c, i) => { s += src[(cs[y].start + i) * sw + x] * c; });
          out[y * sw + x] = s;
        }
      src = out;
    }
    return Float64Array.from(src);
  }

  // Mean stroke width: area / half the boundary (mnist_cnn.preprocess._stroke_width).
  function strokeWidth(ink, h, w) {
    let area = 0, interior = 0;
    const solid = (y, x) => y >= 0 && y < h && x >= 0 && x < w && ink[y * w + x] > 0.5;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        if (solid(y, x)) {
          area++;
          if (solid(y - 1, x) && solid(y + 1, x) && solid(y, x - 1) && solid(y, x + 1)) interior++;
        }
    return area === 0 ? 0 : 2 * area / Math.max(area - interior, 1);
  }

  // Erode strokes much thicker than MNIST's (Pillow's MinFilter: edges repeated).
  function thin(crop, h, w) {
    const width = strokeWidth(crop, h, w), size = Math.max(h, w);
    const r = Math.floor((width - STROKE_FRACTION * size) / 2);
    if (width <= THICK_FRACTION * size || r < 1) return crop;
    const src = Float32Array.from(crop), out = new Float64Array(h * w);
    let peak = 0;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        let m = Infinity;
        for (let dy = -r; dy <= r; dy++)
          for (let dx = -r; dx <= r; dx++) {
            const yy = Math.min(Math.max(y + dy, 0), h - 1), xx = Math.min(Math.max(x + dx, 0), w - 1);
            if (src[yy * w + xx] < m) m = src[yy * w + xx];
          }
        out[y * w + x] = m;
        if (m > peak) peak = m;
      }
    return peak > 0 ? out : crop;
  }

  // Step 3: longer side to 20 px, aspect ratio kept, peak back to 1.
  function fitBox(ink, h, w) {
    const scale = BOX / Math.max(h, w);
    const nh = Math.min(BOX, Math.max(1, roundHalfEven(h * scale)));
    const nw = Math.min(BOX, Math.max(1, roundHalfEven(w * scale)));
    const small = resize(ink, h, w, nh, nw).map((v) => Math.min(Math.max(v, 0), 1));
    const peak = small.reduce((a, v) => Math.max(a, v), 0);
    return { data: peak > 0 ? small.map((v) => v / peak) : small, h: nh, w: nw };
  }

  // Step 4: into 28 x 28, centre of mass at (14, 14), kept inside the field.
  function centre(p) {
    const rows = new Float64Array(p.h), cols = new Float64Array(p.w);
    let total = 0, my = 0, mx = 0;
    for (let y = 0; y < p.h; y++)
      for (let x = 0; x < p.w; x++) {
        const v = p.data[y * p.w + x];
        total += v;
        rows[y] += v;
        cols[x] += v;
      }
    rows.forEach((v, y) => { my += v * y; });
    cols.forEach((v, x) => { mx += v * x; });
    const clip = (v, hi) => Math.min(Math.max(v, 0), hi);
    const top = clip(roundHalfEven(CENTRE - my / total), SIZE - p.h);
    const left = clip(roundHalfEven(CENTRE - mx / total), SIZE - p.w);
    const out = new Float32Array(SIZE * SIZE);
    for (let y = 0; y < p.h; y++)
      for (let x = 0; x < p.w; x++) out[(top + y) * SIZE + left + x] = p.data[y * p.w + x];
    return out;
  }

  // The whole pipeline. Returns {image: Float32Array(784) or null, box: the
  // ink's [top, bottom, left, right) on the canvas or null}: null when there
  // is no ink, as to_mnist returns None.
  function toMnist(rgba, w, h) {
    const ink = inkMap(rgba, w, h), box = bbox(ink, w, h);
    if (!box) return { image: null, box: null };
    const [top, bottom, left, right] = box, ch = bottom - top, cw = right - left;
    let crop = new Float64Array(ch * cw);
    for (let y = 0; y < ch; y++) crop.set(ink.subarray((top + y) * w + left, (top + y) * w + right), y * cw);
    crop = thin(crop, ch, cw);
    const patch = fitBox(crop, ch, cw);
    if (!(patch.data.reduce((a, v) => a + v, 0) > 0)) return { image: null, box: box };
    return { image: centre(patch), box: box };
  }

  MnistCnn.toMnist = toMnist;
  MnistCnn.preprocess = { inkMap, bbox, resize, thin, fitBox, centre, roundHalfEven };
})(window.MnistCnn = window.MnistCnn || {});
