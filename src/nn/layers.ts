// The layers guided-diffusion's UNet and the pixel classifier are made of. Each takes a builder
// scoped to its own name, so parameter keys follow the module tree.
import { noGrad } from "../autograd.ts";
import { tidy } from "../scope.ts";
import * as F from "../functional.ts";
import { full, zeros } from "../create.ts";
import type { FloatTensor, Tensor } from "../tensor.ts";
import type { Init, VarBuilder } from "./builder.ts";
import { constant, torchDefault, zerosInit } from "./init.ts";
import { Module } from "./module.ts";

/**
 * Casts a weight to the compute dtype of the activations. Parameters stay in their own (float32)
 * dtype, as master weights; a half-precision torso then runs the way torch.autocast runs it.
 */
function as(w: FloatTensor | null, x: FloatTensor): FloatTensor | null {
  if (w === null || w.dtype === x.dtype) return w;
  return w.to(x.dtype);
}

/** Geometry and initialisation of `Conv1d` and `Conv2d`. */
export interface ConvOptions {
  /** Step between windows (1). */
  stride?: number;
  /** Zero padding on each side (0). */
  padding?: number;
  /** Whether the layer has a bias (true). */
  bias?: boolean;
  /** guided-diffusion's zero_module: weights and bias start at zero. */
  zeroInit?: boolean;
}

/**
 * Conv1d and Conv2d: weight [C_out, C_in, k(, k)] and bias [C_out], from PyTorch's default
 * initialisation (fan-in C_in·k^dims) or zeros.
 */
export abstract class Conv extends Module {
  /** The kernel [C_out, C_in, k] (1-D) or [C_out, C_in, k, k] (2-D). */
  readonly weight: FloatTensor;
  /** The bias [C_out], or null without one. */
  readonly bias: FloatTensor | null;
  /** Creates `weight` and `bias` under `vb` for a convolution over `spatialDims` dimensions. */
  protected constructor(
    vb: VarBuilder,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    readonly options: ConvOptions,
    spatialDims: 1 | 2,
  ) {
    super(vb);
    const init = options.zeroInit ? zerosInit : torchDefault(inChannels * kernel ** spatialDims);
    const kernelShape = Array.from({ length: spatialDims }, () => kernel);
    this.weight = vb.param("weight", [outChannels, inChannels, ...kernelShape], init);
    if (spatialDims === 2 && vb.store.channelsLast) {
      using nhwc = this.weight.toMemoryFormat("channelsLast");
      this.weight.setData_(nhwc);
    }
    this.bias = options.bias === false ? null : vb.param("bias", [outChannels], init);
  }

  /** The stride and padding `forward` passes to the convolution. */
  protected get geometry(): { stride: number; padding: number } {
    return { stride: this.options.stride ?? 1, padding: this.options.padding ?? 0 };
  }
}

/** 2-D convolution with square kernels (torch.nn.Conv2d): keys `weight` and `bias`. */
export class Conv2d extends Conv {
  /** A `kernel`×`kernel` convolution from `inChannels` to `outChannels` under `vb`. */
  constructor(vb: VarBuilder, inChannels: number, outChannels: number, kernel: number, options: ConvOptions = {}) {
    super(vb, inChannels, outChannels, kernel, options, 2);
  }
  // [N, C_in, H, W] -> [N, C_out, H', W']
  /**
   * Convolves x [N, C_in, H, W] -> [N, C_out, H', W'], in x's dtype (the weights are cast to it).
   * @throws TypeError naming the shapes when x is not [N, C_in, H, W].
   */
  forward(x: FloatTensor): FloatTensor {
    return F.conv2d(x, as(this.weight, x)!, as(this.bias, x), this.geometry);
  }
}

/** 1-D convolution (torch.nn.Conv1d): keys `weight` and `bias`. */
export class Conv1d extends Conv {
  /** A width-`kernel` convolution from `inChannels` to `outChannels` under `vb`. */
  constructor(vb: VarBuilder, inChannels: number, outChannels: number, kernel: number, options: ConvOptions = {}) {
    super(vb, inChannels, outChannels, kernel, options, 1);
  }
  // [N, C_in, L] -> [N, C_out, L']
  /**
   * Convolves x [N, C_in, L] -> [N, C_out, L'], in x's dtype (the weights are cast to it).
   * @throws TypeError naming the shapes when x is not [N, C_in, L].
   */
  forward(x: FloatTensor): FloatTensor {
    return F.conv1d(x, as(this.weight, x)!, as(this.bias, x), this.geometry);
  }
  // [N, C_in, H, W] -> [N, C_out, H, W]
  /**
   * A width-1 convolution at every position of a 2-D map x [N, C_in, H, W] -> [N, C_out, H, W]: `forward`'s
   * values for x flattened to [N, C_in, H·W], as a 1×1 2-D convolution that keeps x's memory layout (so
   * channels-last activations need no copy, and the product runs in oneDNN's convolution kernels).
   * @throws RangeError when the layer is not a width-1, stride-1, unpadded convolution.
   */
  forward2d(x: FloatTensor): FloatTensor {
    const { stride, padding } = this.geometry;
    if (this.kernel !== 1 || stride !== 1 || padding !== 0) {
      throw new RangeError(
        `Conv1d ${this.prefix}: forward2d needs kernel 1, stride 1, padding 0 ` +
          `(got kernel ${this.kernel}, stride ${stride}, padding ${padding})`,
      );
    }
    return tidy(() => F.conv2d(x, as(this.weight, x)!.unsqueeze(-1), as(this.bias, x)));
  }
}

/** A fully connected layer y = x·Wᵀ + b (torch.nn.Linear): keys `weight` [out, in] and `bias` [out]. */
export class Linear extends Module {
  /** The weight [outFeatures, inFeatures]. */
  readonly weight: FloatTensor;
  /** The bias [outFeatures], or null without one. */
  readonly bias: FloatTensor | null;
  /**
   * A layer from `inFeatures` to `outFeatures` under `vb`; weights and bias start from PyTorch's default
   * U(-1/√in, 1/√in) unless `weightInit` / `biasInit` say otherwise; `bias: false` leaves the bias out.
   */
  constructor(
    vb: VarBuilder,
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: { bias?: boolean; weightInit?: Init; biasInit?: Init } = {},
  ) {
    super(vb);
    const init = torchDefault(inFeatures);
    this.weight = vb.param("weight", [outFeatures, inFeatures], opts.weightInit ?? init);
    this.bias = opts.bias === false ? null : vb.param("bias", [outFeatures], opts.biasInit ?? init);
  }
  // [..., in] -> [..., out]
  /**
   * Maps x [..., inFeatures] -> [..., outFeatures], in x's dtype.
   * @throws TypeError naming the shapes when x's last dimension is not inFeatures.
   */
  forward(x: FloatTensor): FloatTensor {
    return F.linear(x, as(this.weight, x)!, as(this.bias, x));
  }
}

/** GroupNorm32: statistics in float32 whatever the activations' dtype, as guided-diffusion does. */
export class GroupNorm extends Module {
  /** The per-channel scale [channels] (starts at 1). */
  readonly weight: FloatTensor;
  /** The per-channel shift [channels] (starts at 0). */
  readonly bias: FloatTensor;
  /**
   * Normalises `channels` channels in `groups` groups (32, as guided-diffusion), keys `weight` and `bias`.
   * @throws RangeError when `channels` is not a multiple of `groups`.
   */
  constructor(vb: VarBuilder, readonly channels: number, readonly groups = 32, readonly eps = 1e-5) {
    super(vb);
    if (channels % groups !== 0) {
      throw new RangeError(`GroupNorm ${vb.prefix}: ${channels} channels do not split into ${groups} groups`);
    }
    this.weight = vb.param("weight", [channels], constant(1));
    this.bias = vb.param("bias", [channels], zerosInit);
  }
  /** Normalises x [N, C, ...]; the statistics in float32, the result in x's dtype. */
  forward(x: FloatTensor): FloatTensor {
    if (x.dtype === "float32") return F.groupNorm(x, this.groups, as(this.weight, x), as(this.bias, x), this.eps);
    using wide = x.float();
    using y = F.groupNorm(wide, this.groups, as(this.weight, wide), as(this.bias, wide), this.eps);
    return y.to(x.dtype);
  }
  /**
   * silu(this(x)·(1 + scale) + shift) in one fused kernel (F.groupNormSilu), computed in float32 and
   * returned in x's dtype; scale and shift [N, C] are optional.
   */
  forwardSilu(x: FloatTensor, scale?: FloatTensor | null, shift?: FloatTensor | null): FloatTensor {
    return tidy(() => {
      const wide = x.float();
      const y = F.groupNormSilu(wide, this.groups, {
        weight: as(this.weight, wide),
        bias: as(this.bias, wide),
        scale: scale?.float(),
        shift: shift?.float(),
        eps: this.eps,
      });
      return x.dtype === "float32" ? y : y.to(x.dtype);
    });
  }
}

/** BatchNorm1d over [N, C] or [N, C, L], with running statistics as buffers (PyTorch's keys). */
export class BatchNorm1d extends Module {
  /** The per-feature scale [features] (starts at 1). */
  readonly weight: FloatTensor;
  /** The per-feature shift [features] (starts at 0). */
  readonly bias: FloatTensor;
  /** The running mean [features] (buffer `running_mean`). */
  readonly runningMean: FloatTensor;
  /** The running unbiased variance [features] (buffer `running_var`). */
  readonly runningVar: FloatTensor;
  /** Batches seen in training (buffer `num_batches_tracked`, a scalar). */
  readonly numBatchesTracked: Tensor<"int64">;
  /** Weight of a new batch in the running statistics; null averages all batches equally. */
  momentum: number | null;

  /**
   * Batch norm over `features` channels, running statistics updated with `momentum` (0.1; null for a
   * cumulative average), `eps` added to the variance.
   */
  constructor(vb: VarBuilder, readonly features: number, momentum: number | null = 0.1, readonly eps = 1e-5) {
    super(vb);
    this.momentum = momentum;
    const placement = { dtype: vb.store.dtype, device: vb.store.device };
    this.weight = vb.param("weight", [features], constant(1));
    this.bias = vb.param("bias", [features], zerosInit);
    this.runningMean = vb.buffer("running_mean", zeros([features], placement));
    this.runningVar = vb.buffer("running_var", full([features], 1, placement));
    this.numBatchesTracked = vb.buffer("num_batches_tracked", zeros([], { dtype: "int64", device: placement.device }));
  }
  /** Forgets the running statistics (mean 0, variance 1, no batches seen). */
  resetRunningStats(): void {
    noGrad(() => {
      this.runningMean.zero_();
      this.runningVar.fill_(1);
      this.numBatchesTracked.zero_();
    });
  }

  /**
   * Normalises x [N, C] or [N, C, L]: by the batch's statistics in training (updating the running
   * ones), by the running statistics in evaluation.
   * @throws TorchError naming the shapes when C differs from `features`.
   */
  forward(x: FloatTensor): FloatTensor {
    // As nn.BatchNorm1d: with momentum null, batch n gets weight 1/n (a cumulative average).
    let momentum = this.momentum ?? 0;
    if (this.training) {
      noGrad(() => this.numBatchesTracked.add_(1));
      if (this.momentum === null) momentum = 1 / this.numBatchesTracked.item();
    }
    return F.batchNorm(x, {
      weight: this.weight,
      bias: this.bias,
      runningMean: this.runningMean,
      runningVar: this.runningVar,
      training: this.training,
      momentum,
      eps: this.eps,
    });
  }
}

/** Nearest-neighbour ×2 upsampling, optionally followed by a 3×3 conv (key `conv`). */
export class Upsample extends Module {
  /** The 3×3 convolution after upsampling, or null without one. */
  readonly conv: Conv2d | null;
  /** Upsampling of `channels` channels, with a conv to `outChannels` when `useConv`. */
  constructor(vb: VarBuilder, channels: number, useConv: boolean, outChannels = channels) {
    super(vb);
    this.conv = useConv ? new Conv2d(vb.pp("conv"), channels, outChannels, 3, { padding: 1 }) : null;
  }
  // [N, C, H, W] -> [N, C', 2H, 2W]
  /** Upsamples x [N, C, H, W] -> [N, C', 2H, 2W]. */
  forward(x: FloatTensor): FloatTensor {
    const up = F.interpolate(x, { scaleFactor: 2, mode: "nearest" });
    if (!this.conv) return up;
    using u = up;
    return this.conv.forward(u);
  }
}

/** ×2 downsampling: a stride-2 3×3 conv (key `op`) or 2×2 average pooling. */
export class Downsample extends Module {
  /** The stride-2 3×3 convolution, or null for average pooling. */
  readonly op: Conv2d | null;
  /** Downsampling of `channels` channels, by a conv to `outChannels` when `useConv`, else by pooling. */
  constructor(vb: VarBuilder, channels: number, useConv: boolean, outChannels = channels) {
    super(vb);
    this.op = useConv ? new Conv2d(vb.pp("op"), channels, outChannels, 3, { stride: 2, padding: 1 }) : null;
  }
  // [N, C, H, W] -> [N, C', H/2, W/2]
  /** Downsamples x [N, C, H, W] -> [N, C', H/2, W/2] (H and W rounded down). */
  forward(x: FloatTensor): FloatTensor {
    return this.op ? this.op.forward(x) : F.avgPool2d(x, 2, { stride: 2 });
  }
}
