// The layers guided-diffusion's UNet and the pixel classifier are made of. Each takes a builder
// scoped to its own name, so parameter keys follow the module tree.
import { noGrad } from "../autograd.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import * as F from "../functional.ts";
import { full, zeros } from "../create.ts";
import type { Tensor } from "../tensor.ts";
import type { Init, VarBuilder } from "./builder.ts";
import { constant, torchDefault, zerosInit } from "./init.ts";
import { Module } from "./module.ts";

type FloatTensor = Tensor<FloatDType, Device>;

/**
 * Casts a weight to the compute dtype of the activations. Parameters stay in their own (float32)
 * dtype, as master weights; a half-precision torso then runs the way torch.autocast runs it.
 */
function as(w: FloatTensor | null, x: FloatTensor): FloatTensor | null {
  if (w === null || w.dtype === x.dtype) return w;
  return w.to(x.dtype);
}

export interface ConvOptions {
  stride?: number;
  padding?: number;
  bias?: boolean;
  /** guided-diffusion's zero_module: weights and bias start at zero. */
  zeroInit?: boolean;
}

/**
 * Conv1d and Conv2d: weight [C_out, C_in, k(, k)] and bias [C_out], from PyTorch's default
 * initialisation (fan-in C_in·k^dims) or zeros.
 */
abstract class Conv extends Module {
  readonly weight: FloatTensor;
  readonly bias: FloatTensor | null;
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

  protected get geometry(): { stride: number; padding: number } {
    return { stride: this.options.stride ?? 1, padding: this.options.padding ?? 0 };
  }
}

export class Conv2d extends Conv {
  constructor(vb: VarBuilder, inChannels: number, outChannels: number, kernel: number, options: ConvOptions = {}) {
    super(vb, inChannels, outChannels, kernel, options, 2);
  }
  // [N, C_in, H, W] -> [N, C_out, H', W']
  forward(x: FloatTensor): FloatTensor {
    return F.conv2d(x, as(this.weight, x)!, as(this.bias, x), this.geometry);
  }
}

export class Conv1d extends Conv {
  constructor(vb: VarBuilder, inChannels: number, outChannels: number, kernel: number, options: ConvOptions = {}) {
    super(vb, inChannels, outChannels, kernel, options, 1);
  }
  // [N, C_in, L] -> [N, C_out, L']
  forward(x: FloatTensor): FloatTensor {
    return F.conv1d(x, as(this.weight, x)!, as(this.bias, x), this.geometry);
  }
}

export class Linear extends Module {
  readonly weight: FloatTensor;
  readonly bias: FloatTensor | null;
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
  forward(x: FloatTensor): FloatTensor {
    return F.linear(x, as(this.weight, x)!, as(this.bias, x));
  }
}

/** GroupNorm32: statistics in float32 whatever the activations' dtype, as guided-diffusion does. */
export class GroupNorm extends Module {
  readonly weight: FloatTensor;
  readonly bias: FloatTensor;
  constructor(vb: VarBuilder, readonly channels: number, readonly groups = 32, readonly eps = 1e-5) {
    super(vb);
    if (channels % groups !== 0) {
      throw new RangeError(`GroupNorm ${vb.prefix}: ${channels} channels do not split into ${groups} groups`);
    }
    this.weight = vb.param("weight", [channels], constant(1));
    this.bias = vb.param("bias", [channels], zerosInit);
  }
  forward(x: FloatTensor): FloatTensor {
    if (x.dtype === "float32") return F.groupNorm(x, this.groups, as(this.weight, x), as(this.bias, x), this.eps);
    using wide = x.float();
    using y = F.groupNorm(wide, this.groups, as(this.weight, wide), as(this.bias, wide), this.eps);
    return y.to(x.dtype);
  }
}

/** BatchNorm1d over [N, C] or [N, C, L], with running statistics as buffers (PyTorch's keys). */
export class BatchNorm1d extends Module {
  readonly weight: FloatTensor;
  readonly bias: FloatTensor;
  readonly runningMean: FloatTensor;
  readonly runningVar: FloatTensor;
  readonly numBatchesTracked: Tensor<"int64">;
  /** Weight of a new batch in the running statistics; null averages all batches equally. */
  momentum: number | null;

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
  readonly conv: Conv2d | null;
  constructor(vb: VarBuilder, channels: number, useConv: boolean, outChannels = channels) {
    super(vb);
    this.conv = useConv ? new Conv2d(vb.pp("conv"), channels, outChannels, 3, { padding: 1 }) : null;
  }
  // [N, C, H, W] -> [N, C', 2H, 2W]
  forward(x: FloatTensor): FloatTensor {
    const up = F.interpolate(x, { scaleFactor: 2, mode: "nearest" });
    if (!this.conv) return up;
    using u = up;
    return this.conv.forward(u);
  }
}

/** ×2 downsampling: a stride-2 3×3 conv (key `op`) or 2×2 average pooling. */
export class Downsample extends Module {
  readonly op: Conv2d | null;
  constructor(vb: VarBuilder, channels: number, useConv: boolean, outChannels = channels) {
    super(vb);
    this.op = useConv ? new Conv2d(vb.pp("op"), channels, outChannels, 3, { stride: 2, padding: 1 }) : null;
  }
  // [N, C, H, W] -> [N, C', H/2, W/2]
  forward(x: FloatTensor): FloatTensor {
    return this.op ? this.op.forward(x) : F.avgPool2d(x, 2, { stride: 2 });
  }
}
