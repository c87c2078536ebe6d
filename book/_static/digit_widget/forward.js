/* The book's network in a page of JavaScript: the forward pass only.
 *
 * The layers are the ones the chapters build in NumPy (mnist_cnn.scratch),
 * with the same memory layouts as Keras: a tensor is one image, channels last
 * (H, W, C), stored row by row in a Float32Array; conv kernels are
 * (KH, KW, C_in, C_out) and dense matrices (D_in, D_out). The weights come
 * from `python -m mnist_cnn export-web` (BatchNorm already folded into the
 * convolutions and the dense layer by the bridge). No library, no build step.
 */
(function (MnistCnn) {
  "use strict";

  // Output size and zero padding of a window sliding over n pixels: "valid"
  // (no padding) or "same" (TensorFlow's padding, the extra pixel after).
  function geometry(n, k, stride, padding) {
    if (padding === "same") {
      const out = Math.ceil(n / stride);
      const total = Math.max((out - 1) * stride + k - n, 0);
      return { out: out, before: Math.floor(total / 2) };
    }
    return { out: Math.floor((n - k) / stride) + 1, before: 0 };
  }

  // Conv2D: every output pixel is a dot product of a K x K x C window with each
  // of the F kernels, plus the bias. The loops run over the window and add
  // x[iy, ix, c] * W[ky, kx, c, :] into F accumulators at once.
  function conv2d(x, layer) {
    const [H, W, C] = x.shape;
    const K = layer.kernel_size, S = layer.strides, F = layer.filters;
    const gy = geometry(H, K, S, layer.padding), gx = geometry(W, K, S, layer.padding);
    const OH = gy.out, OW = gx.out;
    const w = layer.W, b = layer.b, xd = x.data;
    const out = new Float32Array(OH * OW * F);
    const acc = new Float64Array(F);
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        acc.set(b);
        for (let ky = 0; ky < K; ky++) {
          const iy = oy * S + ky - gy.before;
          if (iy < 0 || iy >= H) continue;          // zero padding adds nothing
          for (let kx = 0; kx < K; kx++) {
            const ix = ox * S + kx - gx.before;
            if (ix < 0 || ix >= W) continue;
            const xi = (iy * W + ix) * C, wi = (ky * K + kx) * C * F;
            for (let c = 0; c < C; c++) {
              const v = xd[xi + c];
              if (v === 0) continue;                   // after ReLU, many inputs are 0
              const wr = wi + c * F;
              for (let f = 0; f < F; f++) acc[f] += v * w[wr + f];
            }
          }
        }
        out.set(acc, (oy * OW + ox) * F);
      }
    }
    return { data: out, shape: [OH, OW, F] };
  }

  // ReLU: max(x, 0), elementwise.
  function relu(x) {
    const out = new Float32Array(x.data.length);
    for (let i = 0; i < out.length; i++) out[i] = x.data[i] > 0 ? x.data[i] : 0;
    return { data: out, shape: x.shape };
  }

  // MaxPooling2D: the largest value of each P x P window, per channel ("valid").
  function maxPool2d(x, layer) {
    const [H, W, C] = x.shape, P = layer.pool_size, S = layer.strides;
    const OH = geometry(H, P, S, "valid").out, OW = geometry(W, P, S, "valid").out;
    const out = new Float32Array(OH * OW * C).fill(-Infinity);
    for (let oy = 0; oy < OH; oy++)
      for (let ox = 0; ox < OW; ox++)
        for (let py = 0; py < P; py++)
          for (let px = 0; px < P; px++) {
            const xi = ((oy * S + py) * W + ox * S + px) * C, oi = (oy * OW + ox) * C;
            for (let c = 0; c < C; c++)
              if (x.data[xi + c] > out[oi + c]) out[oi + c] = x.data[xi + c];
          }
    return { data: out, shape: [OH, OW, C] };
  }

  // Flatten: the (H, W, C) values are already stored in Keras' flatten order.
  function flatten(x) {
    return { data: x.data, shape: [x.data.length] };
  }

  // Dense: out = x W + b, with W of shape (D_in, units).
  function dense(x, layer) {
    const D = x.data.length, U = layer.units, w = layer.W;
    const acc = Float64Array.from(layer.b);
    for (let d = 0; d < D; d++) {
      const v = x.data[d];
      if (v === 0) continue;
      for (let u = 0; u < U; u++) acc[u] += v * w[d * U + u];
    }
    return { data: Float32Array.from(acc), shape: [U] };
  }

  // Softmax: exp(z - max z), normalised to sum to 1 (the max keeps exp from overflowing).
  function softmax(x) {
    const z = x.data, top = Math.max(...z);
    const e = Array.from(z, (v) => Math.exp(v - top));
    const sum = e.reduce((a, v) => a + v, 0);
    return { data: Float64Array.from(e, (v) => v / sum), shape: x.shape };
  }

  const OPS = { Conv2D: conv2d, ReLU: relu, MaxPooling2D: maxPool2d, Flatten: flatten,
                Dense: dense, Softmax: softmax };

  // The whole network: a 28 x 28 image (784 floats in [0, 1], white digit on
  // black) through every layer in order -> ten probabilities, the digit, and
  // each layer's output by layer name (the widget draws every one of them).
  function forward(net, image) {
    let x = { data: Float32Array.from(image), shape: net.manifest.input_shape };
    const outputs = {};
    for (const layer of net.layers) {
      x = OPS[layer.class](x, layer);
      outputs[layer.name] = x;
    }
    const probs = Array.from(x.data);
    return { probabilities: probs, digit: probs.indexOf(Math.max(...probs)), outputs: outputs };
  }

  // The receptive field of each layer whose output is an image: the square of
  // input pixels that one of its units sees. Unit y (row or column: images,
  // kernels and strides are square here) sees input pixels
  //     start + y * jump  ...  start + y * jump + size - 1.
  // A window of K units, moving S at a time, widens the field by K - 1 steps of
  // the layer below and multiplies the step by S; padding moves the start back.
  // ReLU keeps its input's field. -> {layer name: {size, jump, start}}
  function receptiveFields(net) {
    const fields = {};
    let n = net.manifest.input_shape[0], field = { size: 1, jump: 1, start: 0 };
    for (const layer of net.layers) {
      if (layer.class === "Flatten" || layer.class === "Dense") break;
      if (layer.class === "Conv2D" || layer.class === "MaxPooling2D") {
        const K = layer.class === "Conv2D" ? layer.kernel_size : layer.pool_size;
        const g = geometry(n, K, layer.strides, layer.padding || "valid");
        field = { size: field.size + (K - 1) * field.jump, jump: field.jump * layer.strides,
                  start: field.start - g.before * field.jump };
        n = g.out;
      }
      fields[layer.name] = field;
    }
    return fields;
  }

  MnistCnn.forward = forward;
  MnistCnn.receptiveFields = receptiveFields;
  MnistCnn.ops = OPS;
})(window.MnistCnn = window.MnistCnn || {});
