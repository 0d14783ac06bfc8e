// Sliding-window inference with Gaussian blending of logits (the paper's Appendix A.2): windows of `window`
// pixels, `overlap` between neighbours, each window's logits weighted by a centred Gaussian
// (sigma = 0.125·window), summed and normalised; images smaller than a window are padded.
import { tensor, zeros } from "../create.ts";
import type { Device } from "../device.ts";
import { cat, pad } from "../functional.ts";
import { keep, tidy } from "../scope.ts";
import type { FloatTensor } from "../tensor.ts";

/** How `slidingWindow` tiles an image. */
export interface SlidingOptions {
  /** Window side in pixels (default 256); images smaller than a window are padded up to it. */
  window?: number;
  /** Share of a window that neighbouring windows overlap, in [0, 1) (default 0.2). */
  overlap?: number;
  /** Gaussian sigma as a fraction of the window (default 0.125). */
  sigmaScale?: number;
  /**
   * Windows per `predict` call (4). Small batches already amortise per-call work; larger ones gain
   * no speed and hold every window's features at once (about 0.45 GB each at the paper's scale).
   */
  batch?: number;
}

/** Window origins along one axis: every `stride`, the last flush with the end. */
export function windowStarts(size: number, window: number, stride: number): number[] {
  if (size <= window) return [0];
  const starts: number[] = [];
  for (let s = 0; s + window < size; s += stride) starts.push(s);
  starts.push(size - window);
  return starts;
}

/**
 * The blending weights [1, 1, window, window] float32: a centred Gaussian with its maximum at 1 and
 * sigma = `sigmaScale`·`window` pixels, on `device` (the default device when omitted).
 */
export function gaussianMap(window: number, sigmaScale = 0.125, device?: Device): FloatTensor {
  const sigma = sigmaScale * window, c = (window - 1) / 2;
  const g = new Float32Array(window * window);
  for (let y = 0; y < window; y++) {
    for (let x = 0; x < window; x++) g[y * window + x] = Math.exp(-((y - c) ** 2 + (x - c) ** 2) / (2 * sigma * sigma));
  }
  return tensor(g, { shape: [1, 1, window, window], device });
}

/**
 * Runs `predict` on every window of an image [1, 3, H, W] and blends the logits. `predict` receives
 * windows [n, 3, w, w] and returns logits [n, K, w, w] (or several such, one per head); the result
 * is one blended logit map [1, K, H, W] per returned tensor, in the same order.
 * @throws RangeError when `overlap` is outside [0, 1).
 */
export function slidingWindow(
  image: FloatTensor,
  predict: (windows: FloatTensor) => FloatTensor[],
  tiling: SlidingOptions = {},
): FloatTensor[] {
  const window = tiling.window ?? 256, overlap = tiling.overlap ?? 0.2;
  if (!(overlap >= 0 && overlap < 1)) throw new RangeError(`slidingWindow: overlap must be in [0, 1), got ${overlap}`);
  const [, , h, w] = image.shape;
  return tidy(() => {
    // Smaller than a window: reflect-pad up to it (reflection needs the pad below the size).
    const ph = Math.max(0, window - h), pw = Math.max(0, window - w);
    let padded = image;
    if (ph || pw) padded = pad(image, [0, pw, 0, ph], pw < w && ph < h ? "reflect" : "replicate");
    const H = h + ph, W = w + pw;
    const stride = Math.max(1, Math.floor(window * (1 - overlap)));
    const weight = gaussianMap(window, tiling.sigmaScale ?? 0.125, image.device);
    let sums: FloatTensor[] | null = null;
    const norm = zeros([1, 1, H, W], { device: image.device });
    const origins: [number, number][] = [];
    for (const y of windowStarts(H, window, stride)) {
      for (const x of windowStarts(W, window, stride)) origins.push([y, x]);
    }
    const per = Math.max(1, tiling.batch ?? 4);
    for (let at = 0; at < origins.length; at += per) {
      const group = origins.slice(at, at + per);
      tidy(() => {
        const crops = cat(group.map(([y, x]) => padded.narrow(2, y, window).narrow(3, x, window)), 0);
        const logits = predict(crops);
        if (!sums) sums = logits.map((l) => keep(zeros([1, l.size(1), H, W], { device: image.device })));
        group.forEach(([y, x], j) => {
          logits.forEach((l, i) =>
            sums![i].narrow(2, y, window).narrow(3, x, window).add_(l.narrow(0, j, 1).float().mul(weight))
          );
          norm.narrow(2, y, window).narrow(3, x, window).add_(weight);
        });
      });
    }
    const out = sums!.map((s) => s.div(norm).narrow(2, 0, h).narrow(3, 0, w).contiguous());
    sums!.forEach((s) => s.dispose());
    return out;
  });
}
