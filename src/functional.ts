// Functional neural-network ops, as torch.nn.functional has them.
import { STATUS as ST, sym } from "../ffi/lib.ts";
import { ints } from "../ffi/scratch.ts";
import { INTERPOLATE, LOSS, PAD, POOL, REDUCTION } from "../ffi/codes.ts";
import type { DType } from "./dtype.ts";
import type { Device } from "./device.ts";
import { fail, int, intList } from "./checks.ts";
import { Tensor, tensorArray } from "./tensor.ts";

type Pair = number | readonly [number, number];
/** How a loss reduces its per-element values: "mean", "sum" or "none" (keep them all). */
export type Reduction = keyof typeof REDUCTION;

function pair(v: Pair, what: string): [number, number] {
  if (typeof v === "number") return [int(v, what), v];
  intList(v, what);
  if (v.length !== 2) throw new TypeError(`${what} must be a number or two numbers, got [${v.join(", ")}]`);
  return [v[0], v[1]];
}

function one(v: number | readonly [number], what: string): number {
  return typeof v === "number" ? int(v, what) : int(v[0], what);
}

function shapeError(op: string, message: string, ...ts: Tensor<DType, Device>[]): never {
  throw new TypeError(`${op}: ${message} (got ${ts.map((t) => `[${t.shape.join(", ")}]`).join(", ")})`);
}

/** Concatenates along an existing dimension. */
export function cat<D extends DType, V extends Device>(ts: readonly Tensor<D, V>[], dim = 0): Tensor<D, V> {
  if (ts.length === 0) throw new TypeError("cat: needs at least one tensor");
  return new Tensor(sym.mdm_cat(tensorArray(ts), ts.length, int(dim, "cat: dim"), ST) ?? fail("cat", ...ts));
}

/** Joins along a new dimension. */
export function stack<D extends DType, V extends Device>(ts: readonly Tensor<D, V>[], dim = 0): Tensor<D, V> {
  if (ts.length === 0) throw new TypeError("stack: needs at least one tensor");
  return new Tensor(sym.mdm_stack(tensorArray(ts), ts.length, int(dim, "stack: dim"), ST) ?? fail("stack", ...ts));
}

/** `a` where `cond` holds, `b` elsewhere. */
export function where<D extends DType, V extends Device>(
  cond: Tensor<"bool", V>,
  a: Tensor<D, V>,
  b: Tensor<D, V>,
): Tensor<D, V> {
  return new Tensor(sym.mdm_where(cond.ptr, a.ptr, b.ptr, ST) ?? fail("where", cond, a, b));
}

/**
 * Einstein summation over the inputs, as torch.einsum (e.g. "bij,bjk->bik").
 * @throws TorchError when the equation does not fit the inputs' shapes.
 */
export function einsum<D extends DType, V extends Device>(equation: string, ...ts: Tensor<D, V>[]): Tensor<D, V> {
  const eq = new TextEncoder().encode(equation + "\0");
  return new Tensor(
    sym.mdm_einsum(eq, tensorArray(ts), ts.length, ST) ?? fail(`einsum(${equation})`, ...ts),
  );
}

/** x · wᵀ + b, with x of shape [..., in] and w of shape [out, in]. */
export function linear<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  w: Tensor<D, V>,
  b?: Tensor<D, V> | null,
): Tensor<D, V> {
  if (w.ndim !== 2 || x.ndim < 1 || x.size(-1) !== w.size(1)) {
    shapeError("linear", "input [..., in] needs weight [out, in]", x, w);
  }
  return new Tensor(sym.mdm_linear(x.ptr, w.ptr, b?.ptr ?? null, ST) ?? fail("linear", x, w, b));
}

/** Geometry of a convolution; `S` is one size (1-D) or a size or [h, w] pair (2-D). */
export interface ConvOptions<S> {
  /** Step between windows (1). */
  stride?: S;
  /** Zero padding on each side (0). */
  padding?: S;
  /** Spacing between kernel elements (1). */
  dilation?: S;
  /** Channel groups: input and output channels are split into this many independent convolutions (1). */
  groups?: number;
}

function convCheck(op: string, x: Tensor<DType, Device>, w: Tensor<DType, Device>, rank: number, groups: number) {
  if (x.ndim !== rank + 2) shapeError(op, `input must be [N, C, ${rank === 1 ? "L" : "H, W"}]`, x, w);
  if (w.ndim !== rank + 2) shapeError(op, `weight must have ${rank + 2} dimensions`, x, w);
  if (x.size(1) !== w.size(1) * groups) {
    shapeError(op, `input has ${x.size(1)} channels, weight expects ${w.size(1) * groups} (groups=${groups})`, x, w);
  }
}

/** 1-D convolution of x [N, C, L] with w [O, C/groups, K]. */
export function conv1d<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  w: Tensor<D, V>,
  b?: Tensor<D, V> | null,
  conv: ConvOptions<number | readonly [number]> = {},
): Tensor<D, V> {
  const groups = int(conv.groups ?? 1, "conv1d: groups");
  convCheck("conv1d", x, w, 1, groups);
  const spec = [
    one(conv.stride ?? 1, "conv1d: stride"),
    one(conv.padding ?? 0, "conv1d: padding"),
    one(conv.dilation ?? 1, "conv1d: dilation"),
  ];
  return new Tensor(sym.mdm_conv(x.ptr, w.ptr, b?.ptr ?? null, ints(spec), 1, groups, ST) ?? fail("conv1d", x, w, b));
}

/** 2-D convolution of x [N, C, H, W] with w [O, C/groups, kH, kW]. */
export function conv2d<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  w: Tensor<D, V>,
  b?: Tensor<D, V> | null,
  conv: ConvOptions<Pair> = {},
): Tensor<D, V> {
  const groups = int(conv.groups ?? 1, "conv2d: groups");
  convCheck("conv2d", x, w, 2, groups);
  const spec = [
    ...pair(conv.stride ?? 1, "conv2d: stride"),
    ...pair(conv.padding ?? 0, "conv2d: padding"),
    ...pair(conv.dilation ?? 1, "conv2d: dilation"),
  ];
  return new Tensor(sym.mdm_conv(x.ptr, w.ptr, b?.ptr ?? null, ints(spec), 2, groups, ST) ?? fail("conv2d", x, w, b));
}

/** Transposed 2-D convolution of x [N, C, H, W] with w [C, O/groups, kH, kW]. */
export function convTranspose2d<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  w: Tensor<D, V>,
  b?: Tensor<D, V> | null,
  conv: ConvOptions<Pair> & { outputPadding?: Pair } = {},
): Tensor<D, V> {
  const groups = int(conv.groups ?? 1, "convTranspose2d: groups");
  if (x.ndim !== 4 || w.ndim !== 4 || x.size(1) !== w.size(0)) {
    shapeError("convTranspose2d", "input [N, C, H, W] needs weight [C, O/groups, kH, kW]", x, w);
  }
  const spec = [
    ...pair(conv.stride ?? 1, "convTranspose2d: stride"),
    ...pair(conv.padding ?? 0, "convTranspose2d: padding"),
    ...pair(conv.outputPadding ?? 0, "convTranspose2d: outputPadding"),
    ...pair(conv.dilation ?? 1, "convTranspose2d: dilation"),
  ];
  return new Tensor(
    sym.mdm_conv_transpose2d(x.ptr, w.ptr, b?.ptr ?? null, ints(spec), groups, ST) ??
      fail("convTranspose2d", x, w, b),
  );
}

/** Group normalisation of x [N, C, ...] over `groups` channel groups. */
export function groupNorm<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  groups: number,
  weight?: Tensor<D, V> | null,
  bias?: Tensor<D, V> | null,
  eps = 1e-5,
): Tensor<D, V> {
  int(groups, "groupNorm: groups");
  if (x.ndim < 2 || x.size(1) % groups !== 0) {
    shapeError("groupNorm", `channel count must be divisible by groups=${groups}`, x);
  }
  return new Tensor(
    sym.mdm_group_norm(x.ptr, groups, weight?.ptr ?? null, bias?.ptr ?? null, eps, ST) ?? fail("groupNorm", x),
  );
}

/** The optional parameters of `groupNormSilu`. */
export interface GroupNormSiluOptions<D extends DType, V extends Device> {
  /** Per-channel scale γ [C] (1 when omitted). */
  weight?: Tensor<D, V> | null;
  /** Per-channel shift β [C] (0 when omitted). */
  bias?: Tensor<D, V> | null;
  /** Per-sample, per-channel scale [N, C]: the result is normalised·(1 + scale) (the timestep's scale). */
  scale?: Tensor<D, V> | null;
  /** Per-sample, per-channel shift [N, C], added after the scale. */
  shift?: Tensor<D, V> | null;
  /** Added to the variance (1e-5). */
  eps?: number;
}

/**
 * silu(groupNorm(x)·(1 + scale) + shift) for x [N, C, ...], the UNet's norm-activation pair (with the
 * timestep's scale-shift between them), in one fused kernel for float32 CPU tensors in the default layout
 * (which keeps only x and the group statistics for the backward pass); libtorch's separate ops, with the
 * same result, otherwise. Throws a TorchError when C is not a multiple of `groups` or scale/shift are not
 * [N, C].
 */
export function groupNormSilu<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  groups: number,
  norm: GroupNormSiluOptions<D, V> = {},
): Tensor<D, V> {
  int(groups, "groupNormSilu: groups");
  return new Tensor(
    sym.mdm_group_norm_silu(
      x.ptr,
      groups,
      norm.weight?.ptr ?? null,
      norm.bias?.ptr ?? null,
      norm.scale?.ptr ?? null,
      norm.shift?.ptr ?? null,
      norm.eps ?? 1e-5,
      ST,
    ) ?? fail("groupNormSilu", x, norm.scale, norm.shift),
  );
}

/** Parameters, running statistics and mode of `batchNorm`; every tensor is [C]. */
export interface BatchNormOptions<D extends DType, V extends Device> {
  /** Per-channel scale γ (1 when omitted). */
  weight?: Tensor<D, V> | null;
  /** Per-channel shift β (0 when omitted). */
  bias?: Tensor<D, V> | null;
  /** Running mean, used in evaluation and updated in place in training. */
  runningMean?: Tensor<D, V> | null;
  /** Running (unbiased) variance, used in evaluation and updated in place in training. */
  runningVar?: Tensor<D, V> | null;
  /** Batch statistics (and running-statistics updates) in training, running statistics otherwise
   * (the default, as in PyTorch's F.batch_norm). */
  training?: boolean;
  /** Weight of the current batch in the running statistics' update (0.1). */
  momentum?: number;
  /** Added to the variance before the square root (1e-5). */
  eps?: number;
}

/** Batch normalisation of x [N, C, ...]; in training the running statistics are updated in place. */
export function batchNorm<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  norm: BatchNormOptions<D, V> = {},
): Tensor<D, V> {
  const training = norm.training ?? false;
  if (!training && (!norm.runningMean || !norm.runningVar)) {
    throw new TypeError("batchNorm: evaluation mode needs runningMean and runningVar");
  }
  return new Tensor(
    sym.mdm_batch_norm(
      x.ptr,
      norm.weight?.ptr ?? null,
      norm.bias?.ptr ?? null,
      norm.runningMean?.ptr ?? null,
      norm.runningVar?.ptr ?? null,
      training ? 1 : 0,
      norm.momentum ?? 0.1,
      norm.eps ?? 1e-5,
      ST,
    ) ?? fail("batchNorm", x),
  );
}

/** Layer normalisation over the trailing `shape` dimensions. */
export function layerNorm<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  shape: readonly number[],
  weight?: Tensor<D, V> | null,
  bias?: Tensor<D, V> | null,
  eps = 1e-5,
): Tensor<D, V> {
  const s = intList(shape, "layerNorm: shape");
  return new Tensor(
    sym.mdm_layer_norm(x.ptr, ints(s), s.length, weight?.ptr ?? null, bias?.ptr ?? null, eps, ST) ??
      fail("layerNorm", x),
  );
}

/** Softmax along `dim`, optionally computed in (and returned as) another dtype: Tensor.softmax. */
export function softmax<D extends DType, V extends Device, E extends DType = D>(
  x: Tensor<D, V>,
  dim: number,
  dtype?: E,
): Tensor<E, V> {
  return x.softmax(dim, dtype);
}

/**
 * Attention: softmax(q kᵀ · scale) v for q [B, L, E], k and v [B, S, E] -> [B, L, E], or the same with a
 * heads dimension ([B, H, L, E] and so on); `scale` defaults to E^-1/2. libtorch's fused kernel (flash
 * attention on the CPU) where the libtorch has one (2.1 and later), which never holds the [B, L, S] weights
 * and runs fastest on [B, H, L, E] views of a [B, L, H, E] tensor; with libtorch 1.x the same product in
 * three ops. Throws a TorchError for other ranks or mismatched sizes.
 */
export function scaledDotProductAttention<D extends DType, V extends Device>(
  q: Tensor<D, V>,
  k: Tensor<D, V>,
  v: Tensor<D, V>,
  attention: { scale?: number } = {},
): Tensor<D, V> {
  const scale = attention.scale ?? 1 / Math.sqrt(q.shape[q.ndim - 1]);
  return new Tensor(sym.mdm_sdpa(q.ptr, k.ptr, v.ptr, scale, ST) ?? fail("scaledDotProductAttention", q, k, v));
}

/** Log-softmax along `dim`: Tensor.logSoftmax. */
export function logSoftmax<D extends DType, V extends Device, E extends DType = D>(
  x: Tensor<D, V>,
  dim: number,
  dtype?: E,
): Tensor<E, V> {
  return x.logSoftmax(dim, dtype);
}

/** Zeroes elements with probability p and scales the rest by 1/(1-p); identity when not training. */
export function dropout<D extends DType, V extends Device>(x: Tensor<D, V>, p: number, training = true): Tensor<D, V> {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout: p must be in [0, 1], got ${p}`);
  return new Tensor(sym.mdm_dropout(x.ptr, p, training ? 1 : 0, ST) ?? fail("dropout", x));
}

/** Geometry of a 2-D pooling; sizes are one number or an [h, w] pair. */
export interface PoolOptions {
  /** Step between windows (the kernel size). */
  stride?: Pair;
  /** Implicit padding on each side (0; -Infinity for max pooling, zeros for average pooling). */
  padding?: Pair;
  /** Round the output size up instead of down. */
  ceilMode?: boolean;
  /** Average pooling: count padded zeros in the divisor (true, as PyTorch). */
  countIncludePad?: boolean;
}

function pool<D extends DType, V extends Device>(
  code: number,
  op: string,
  x: Tensor<D, V>,
  kernel: Pair,
  pooling: PoolOptions,
) {
  const k = pair(kernel, `${op}: kernel`);
  const spec = [...k, ...pair(pooling.stride ?? k, `${op}: stride`), ...pair(pooling.padding ?? 0, `${op}: padding`)];
  return new Tensor<D, V>(
    sym.mdm_pool2d(code, x.ptr, ints(spec), pooling.ceilMode ? 1 : 0, pooling.countIncludePad === false ? 0 : 1, ST) ??
      fail(op, x),
  );
}

/**
 * Average pooling of x [N, C, H, W] with a `kernel` window -> [N, C, H', W'].
 * @throws TypeError naming a kernel, stride or padding that is not integers; TorchError for windows larger than the input.
 */
export function avgPool2d<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  kernel: Pair,
  pooling: PoolOptions = {},
): Tensor<D, V> {
  return pool(POOL.avg, "avgPool2d", x, kernel, pooling);
}

/**
 * Max pooling of x [N, C, H, W] with a `kernel` window -> [N, C, H', W'].
 * @throws TypeError naming a kernel, stride or padding that is not integers; TorchError for windows larger than the input.
 */
export function maxPool2d<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  kernel: Pair,
  pooling: PoolOptions = {},
): Tensor<D, V> {
  return pool(POOL.max, "maxPool2d", x, kernel, pooling);
}

/** The output size (or scale) and the method of `interpolate`. */
export interface InterpolateOptions {
  /** Output [H, W]; or give scaleFactor. */
  size?: readonly [number, number];
  /** Output size as a multiple of the input's (one factor, or [h, w]); or give `size`. */
  scaleFactor?: number | readonly [number, number];
  /** "nearest" (the default) or "bilinear". */
  mode?: "nearest" | "bilinear";
  /** Bilinear only: align the corner pixels' centres of input and output (false, as PyTorch's default). */
  alignCorners?: boolean;
}

/** Resamples x [N, C, H, W], as F.interpolate does (nearest or bilinear). */
export function interpolate<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  sampling: InterpolateOptions,
): Tensor<D, V> {
  if (x.ndim !== 4) shapeError("interpolate", "input must be [N, C, H, W]", x);
  const mode = sampling.mode ?? "nearest";
  if (mode !== "nearest" && mode !== "bilinear") {
    throw new TypeError(`interpolate: mode must be "nearest" or "bilinear", got ${JSON.stringify(mode)}`);
  }
  if (mode === "nearest" && sampling.alignCorners !== undefined) {
    throw new TypeError("interpolate: alignCorners applies to bilinear mode only");
  }
  let h: number, w: number, sh = 0, sw = 0;
  if (sampling.size && sampling.scaleFactor === undefined) {
    [h, w] = pair(sampling.size, "interpolate: size");
  } else if (sampling.scaleFactor !== undefined && !sampling.size) {
    [sh, sw] = typeof sampling.scaleFactor === "number"
      ? [sampling.scaleFactor, sampling.scaleFactor]
      : sampling.scaleFactor;
    if (!(sh > 0 && sw > 0)) throw new RangeError("interpolate: scaleFactor must be positive");
    h = Math.floor(x.size(2) * sh);
    w = Math.floor(x.size(3) * sw);
  } else {
    throw new TypeError("interpolate: give exactly one of size and scaleFactor");
  }
  return new Tensor(
    sym.mdm_interpolate(x.ptr, INTERPOLATE[mode], h, w, sh, sw, sampling.alignCorners ? 1 : 0, ST) ??
      fail("interpolate", x),
  );
}

/** Pads the trailing dimensions: `pads` is [left, right, top, bottom, ...], last dimension first. */
export function pad<D extends DType, V extends Device>(
  x: Tensor<D, V>,
  pads: readonly number[],
  mode: keyof typeof PAD = "constant",
  value = 0,
): Tensor<D, V> {
  const p = intList(pads, "pad: pads");
  if (p.length % 2 !== 0 || p.length / 2 > x.ndim) {
    throw new TypeError(
      `pad: pads must hold two values per padded dimension, got [${p.join(", ")}] for a ${x.ndim}-D tensor`,
    );
  }
  const m = PAD[mode];
  if (m === undefined) throw new TypeError(`pad: unknown mode ${JSON.stringify(mode)}`);
  return new Tensor(sym.mdm_pad(x.ptr, ints(p), p.length, m, value, ST) ?? fail("pad", x));
}

/** Options of `crossEntropy`, as torch.nn.functional.cross_entropy has them. */
export interface CrossEntropyOptions<V extends Device> {
  /** Per-class weights [K]. */
  weight?: Tensor<"float32", V> | null;
  /** Target value whose pixels are skipped (255 in the segmentation protocols). */
  ignoreIndex?: number;
  /** "mean" over the non-ignored targets (the default), "sum" or "none". */
  reduction?: Reduction;
  /** Mixes the one-hot target with the uniform distribution by this amount, in [0, 1] (0). */
  labelSmoothing?: number;
}

/** Cross-entropy of logits [N, K, ...] against class indices [N, ...]. */
export function crossEntropy<D extends DType, V extends Device>(
  logits: Tensor<D, V>,
  target: Tensor<"int64", V>,
  loss: CrossEntropyOptions<V> = {},
): Tensor<D, V> {
  if (logits.ndim < 1 || target.ndim !== (logits.ndim === 1 ? 0 : logits.ndim - 1)) {
    shapeError("crossEntropy", "logits [N, K, ...] need class-index targets [N, ...]", logits, target);
  }
  return new Tensor(
    sym.mdm_cross_entropy(
      logits.ptr,
      target.ptr,
      loss.weight?.ptr ?? null,
      REDUCTION[loss.reduction ?? "mean"],
      int(loss.ignoreIndex ?? -100, "crossEntropy: ignoreIndex"),
      loss.labelSmoothing ?? 0,
      ST,
    ) ?? fail("crossEntropy", logits, target),
  );
}

function regression<D extends DType, V extends Device>(
  code: number,
  op: string,
  a: Tensor<D, V>,
  b: Tensor<D, V>,
  r: Reduction,
) {
  return new Tensor<D, V>(sym.mdm_regression_loss(code, a.ptr, b.ptr, REDUCTION[r], ST) ?? fail(op, a, b));
}

/**
 * Mean squared error between `a` and `b` (same shape), reduced by `reduction` ("mean").
 * @throws TorchError naming the shapes when they differ.
 */
export function mseLoss<D extends DType, V extends Device>(
  a: Tensor<D, V>,
  b: Tensor<D, V>,
  reduction: Reduction = "mean",
): Tensor<D, V> {
  return regression(LOSS.mse, "mseLoss", a, b, reduction);
}

/**
 * Mean absolute error between `a` and `b` (same shape), reduced by `reduction` ("mean").
 * @throws TorchError naming the shapes when they differ.
 */
export function l1Loss<D extends DType, V extends Device>(
  a: Tensor<D, V>,
  b: Tensor<D, V>,
  reduction: Reduction = "mean",
): Tensor<D, V> {
  return regression(LOSS.l1, "l1Loss", a, b, reduction);
}
