// SSIM and the MDM reconstruction loss (the paper's Section 4.1, Equation 4): the release's 5×5 Gaussian window with
// sigma 1.5, zero padding and L = 1 by default; Wang et al.'s 11×11 window as an option.
import { tensor } from "../create.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import { cat, conv2d } from "../functional.ts";
import { tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";

/** The window and constants of `ssim` and `ssimLoss` (the MDM release's by default). */
export interface SsimOptions {
  /** Side of the Gaussian window (5 in the release, 11 in Wang et al. 2004). */
  windowSize?: number;
  /** Standard deviation of the Gaussian window in pixels (1.5). */
  sigma?: number;
  /** The dynamic range L in C1 = (0.01·L)², C2 = (0.03·L)². The release uses 1 on [-1, 1] data. */
  dataRange?: number;
  /** Zero padding on each side; windowSize/2 (rounded down) keeps the map at the image size. */
  padding?: number;
}

/**
 * The normalised 1-D Gaussian, exp(-(i - w/2)² / 2σ²).
 * `windowSize` weights (sigma in pixels) centred on index floor(windowSize / 2), summing to 1.
 */
export function gaussian(windowSize: number, sigma: number): number[] {
  const c = Math.floor(windowSize / 2);
  const g = Array.from({ length: windowSize }, (_, i) => Math.exp(-((i - c) ** 2) / (2 * sigma * sigma)));
  const s = g.reduce((a, b) => a + b, 0);
  return g.map((v) => v / s);
}

/**
 * The SSIM map of two image batches, per channel (depth-wise window).
 * x and y [B, C, H, W] of one shape -> [B, C, H', W'] (H' = H with the default padding), each
 * value in [-1, 1].
 * @throws TypeError naming the shapes when x and y are not 4-D or differ.
 */
// x, y [B, C, H, W] -> [B, C, H', W'] (H' = H with the default padding)
export function ssim<V extends Device>(
  x: Tensor<FloatDType, V>,
  y: Tensor<FloatDType, V>,
  opts: SsimOptions = {},
): Tensor<FloatDType, V> {
  const ws = opts.windowSize ?? 5, sigma = opts.sigma ?? 1.5, L = opts.dataRange ?? 1;
  const pad = opts.padding ?? Math.floor(ws / 2);
  if (x.ndim !== 4 || x.shape.join() !== y.shape.join()) {
    throw new TypeError(
      `ssim: x and y must be [B, C, H, W] of one shape, got [${x.shape.join(", ")}] and [${y.shape.join(", ")}]`,
    );
  }
  const c = x.size(1);
  const c1 = (0.01 * L) ** 2, c2 = (0.03 * L) ** 2;
  return tidy(() => {
    const g = gaussian(ws, sigma);
    // In float64, cast to the input's dtype: a float32 window would cap float64 SSIM at ~1e-8.
    const kernel = Float64Array.from(g.flatMap((gi) => g.map((gj) => gi * gj)));
    // One grouped convolution filters x, y, x², y² and xy together: five statistics per channel.
    // A contiguous weight: with the expanded (stride-0) one, libtorch's CPU convolution takes up to
    // 1.5× as long, forward and backward, for the same values.
    const window = tensor(kernel, { shape: [1, 1, ws, ws], device: x.device }).to(x.dtype).expand(5 * c, 1, ws, ws)
      .contiguous();
    const stats = conv2d(cat([x, y, x.mul(x), y.mul(y), x.mul(y)], 1), window, null, { padding: pad, groups: 5 * c });
    const [muX, muY, xx, yy, xy] = stats.chunk(5, 1);
    const muXY = muX.mul(muY), muX2 = muX.square(), muY2 = muY.square();
    // Biased (population) variances: E[x²] − μ².
    const varX = xx.sub(muX2), varY = yy.sub(muY2), cov = xy.sub(muXY);
    const num = muXY.mul(2).add(c1).mul(cov.mul(2).add(c2));
    const den = muX2.add(muY2).add(c1).mul(varX.add(varY).add(c2));
    return num.div(den);
  });
}

/**
 * The MDM loss: mean over B, C, H, W of clamp(1 − SSIM, 0, 1) / 2.
 * pred and target [B, C, H, W] -> a scalar tensor in [0, 1].
 * @throws TypeError naming the shapes when they are not 4-D or differ.
 */
export function ssimLoss<V extends Device>(
  pred: Tensor<FloatDType, V>,
  target: Tensor<FloatDType, V>,
  opts: SsimOptions = {},
): Tensor<FloatDType, V> {
  return tidy(() => ssim(pred, target, opts).rsub(1).clamp(0, 1).div(2).mean());
}
