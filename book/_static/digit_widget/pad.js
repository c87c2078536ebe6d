/* A drawing pad: a <canvas> that takes white strokes from the mouse, a pen or a
 * finger (pointer events), with a round brush as the app's canvas draws them.
 * The digit widget (widget.js) and the convolution step-through (stepthrough.js)
 * both draw on one.
 */
(function (MnistCnn) {
  "use strict";

  // Make `canvas` a pad with a brush `brush` canvas pixels wide. While the pen
  // moves, onMove() runs at most once per animation frame (however many moves the
  // pointer reports); when it lifts, onEnd(the event's time stamp). Returns
  // {cancel}: drop a pending onMove (before the canvas is cleared, say).
  function drawingPad(canvas, brush, onMove, onEnd) {
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    let drawing = false, last = null, frame = 0;

    function point(ev) {
      const r = canvas.getBoundingClientRect();
      return [(ev.clientX - r.left) * canvas.width / r.width,
              (ev.clientY - r.top) * canvas.height / r.height];
    }

    function segment(a, b) {
      ctx.strokeStyle = ctx.fillStyle = "#fff";
      ctx.lineWidth = brush;
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(a[0], a[1]);
      ctx.lineTo(b[0], b[1]);
      ctx.stroke();
    }

    function cancel() {
      if (frame) cancelAnimationFrame(frame);
      frame = 0;
    }

    canvas.addEventListener("pointerdown", function (ev) {
      if (ev.button > 0) return;
      ev.preventDefault();
      canvas.setPointerCapture(ev.pointerId);
      drawing = true;
      last = point(ev);
      segment(last, last);                      // a tap leaves a dot
    });
    canvas.addEventListener("pointermove", function (ev) {
      if (!drawing) return;
      const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
      for (const e of events.length ? events : [ev]) {
        const p = point(e);
        segment(last, p);
        last = p;
      }
      if (!frame) frame = requestAnimationFrame(function () {
        frame = 0;
        if (drawing) onMove();
      });
    });
    function end(ev) {
      if (!drawing) return;
      drawing = false;
      cancel();
      onEnd(ev.timeStamp || performance.now());
    }
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    return { cancel: cancel };
  }

  MnistCnn.drawingPad = drawingPad;
})(window.MnistCnn = window.MnistCnn || {});
