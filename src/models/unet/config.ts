// guided-diffusion's UNet configuration, camelCased, with its defaults and the paper's presets.
import type { Device } from "../../device.ts";
import { torchVersion } from "../../runtime.ts";

/**
 * guided-diffusion's UNet hyper-parameters (create_model's arguments, camelCased). Give a partial
 * config with `imageSize` to `new UNet(...)` or `resolveConfig`; the rest take guided-diffusion's defaults.
 */
export interface UNetConfig {
  /**
   * Side of the (square) training images in pixels; picks the default channelMult. Inputs may be any size divisible by 2^(levels-1).
   */
  imageSize: number;
  /** Input image channels (3). */
  inChannels: number;
  /** Base channel count, multiplied per level by channelMult (128). */
  modelChannels: number;
  /** Defaults to 3, or 6 with learnSigma. */
  outChannels: number;
  /** ResBlocks per level in the encoder (the decoder has one more) (2). */
  numResBlocks: number;
  /** Feature-map resolutions (in pixels) that get attention, e.g. [32, 16, 8]. */
  attentionResolutions: number[];
  /** Channel multiplier per level; by default chosen from imageSize as guided-diffusion does. */
  channelMult: number[];
  /** Dropout rate in the ResBlocks, in [0, 1) (0). */
  dropout: number;
  /** Attention heads when numHeadChannels is -1 (4). */
  numHeads: number;
  /** Channels per head; when set (not -1) it decides the head count instead of numHeads. */
  numHeadChannels: number;
  /** Heads in the decoder's attention; -1 means numHeads. */
  numHeadsUpsample: number;
  /** Up/down-sample with ResBlocks instead of (conv) Upsample/Downsample layers. */
  resblockUpdown: boolean;
  /**
   * Condition the ResBlocks on the timestep by scale and shift of the second norm (FiLM) rather than by addition (true).
   */
  useScaleShiftNorm: boolean;
  /** Split q, k, v before the heads (QKVAttention) instead of after (QKVAttentionLegacy) (false). */
  useNewAttentionOrder: boolean;
  /** Output learned variances as well (outChannels 6 instead of 3) (false). */
  learnSigma: boolean;
  /** Upsample/Downsample with a conv (guided-diffusion's conv_resample). */
  convResample: boolean;
  /** Compute dtype of the torso (input, middle and output blocks): use_fp16 is "float16". */
  torsoDtype: "float32" | "float16" | "bfloat16";
  /**
   * Run on channels-last (NHWC) activations and weights: the same results in another memory
   * layout (within float rounding). `new UNet` turns it on by default where it was measured to pay
   * (`defaultChannelsLast`); `resolveConfig` alone leaves it off.
   */
  channelsLast: boolean;
}

/**
 * Whether a UNet on `device` runs channels-last unless its config says: on CPUs with libtorch 2.x,
 * where the training step measured 3-13% faster (oneDNN's convolutions, the fused norm kernel and
 * the fused attention all take NHWC); not with libtorch 1.x, where it measured slower before the
 * fused kernels and has not been measured since, nor on CUDA, where it has not been measured.
 */
export function defaultChannelsLast(device: Device): boolean {
  return device === "cpu" && Number(torchVersion().split(".")[0]) >= 2;
}

/**
 * guided-diffusion's channel_mult for each image size (create_model).
 * @throws RangeError for an image size without a default (other than 64, 128, 256, 512).
 */
export function defaultChannelMult(imageSize: number): number[] {
  switch (imageSize) {
    case 512:
      return [0.5, 1, 1, 2, 2, 4, 4];
    case 256:
      return [1, 1, 2, 2, 4, 4];
    case 128:
      return [1, 1, 2, 3, 4];
    case 64:
      return [1, 2, 3, 4];
  }
  throw new RangeError(`UNet: no default channelMult for imageSize ${imageSize}; give channelMult`);
}

/**
 * Fills in guided-diffusion's defaults (model_and_diffusion_defaults) and validates.
 * @throws RangeError naming the first invalid field (a non-positive size, channels that GroupNorm's 32 groups do not divide, a dropout outside [0, 1), an attention resolution that does not divide imageSize).
 */
export function resolveConfig(c: Partial<UNetConfig> & { imageSize: number }): UNetConfig {
  const learnSigma = c.learnSigma ?? false;
  const cfg: UNetConfig = {
    imageSize: c.imageSize,
    inChannels: c.inChannels ?? 3,
    modelChannels: c.modelChannels ?? 128,
    outChannels: c.outChannels ?? (learnSigma ? 6 : 3),
    numResBlocks: c.numResBlocks ?? 2,
    attentionResolutions: c.attentionResolutions ?? [16, 8],
    channelMult: c.channelMult ?? defaultChannelMult(c.imageSize),
    dropout: c.dropout ?? 0,
    numHeads: c.numHeads ?? 4,
    numHeadChannels: c.numHeadChannels ?? -1,
    numHeadsUpsample: c.numHeadsUpsample ?? -1,
    resblockUpdown: c.resblockUpdown ?? false,
    useScaleShiftNorm: c.useScaleShiftNorm ?? true,
    useNewAttentionOrder: c.useNewAttentionOrder ?? false,
    learnSigma,
    convResample: c.convResample ?? true,
    torsoDtype: c.torsoDtype ?? "float32",
    channelsLast: c.channelsLast ?? false,
  };
  const positive = ["imageSize", "inChannels", "modelChannels", "outChannels", "numResBlocks"] as const;
  for (const k of positive) {
    if (!Number.isInteger(cfg[k]) || cfg[k] <= 0) {
      throw new RangeError(`UNet: ${k} must be a positive integer, got ${cfg[k]}`);
    }
  }
  if (cfg.channelMult.length === 0) throw new RangeError("UNet: channelMult is empty");
  for (const m of cfg.channelMult) {
    const ch = m * cfg.modelChannels;
    if (!Number.isInteger(ch) || ch % 32 !== 0) {
      throw new RangeError(
        `UNet: channelMult ${m} × modelChannels ${cfg.modelChannels} = ${ch} is not a multiple of 32 (GroupNorm's groups)`,
      );
    }
  }
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) {
    throw new RangeError(`UNet: dropout must be in [0, 1), got ${cfg.dropout}`);
  }
  for (const r of cfg.attentionResolutions) {
    if (!Number.isInteger(r) || r <= 0 || cfg.imageSize % r !== 0) {
      throw new RangeError(`UNet: attention resolution ${r} does not divide imageSize ${cfg.imageSize}`);
    }
  }
  return cfg;
}

/** The MDM paper's medical model (GlaS, MoNuSeg), as the authors' release configures it. The authors ran its torso in
 * float16 on GPUs: add `torsoDtype: "float16"` there ("bfloat16" on a CPU). */
export const MEDICAL_256: Partial<UNetConfig> & { imageSize: number } = {
  imageSize: 256,
  modelChannels: 192,
  channelMult: [1, 1, 2, 2, 4, 4],
  numResBlocks: 2,
  attentionResolutions: [32, 16, 8],
  numHeadChannels: 64,
  resblockUpdown: true,
  useScaleShiftNorm: true,
  dropout: 0,
  learnSigma: false,
};

/** ddpm-segmentation's FFHQ-256 DDPM (guided-diffusion's unconditional 256 model settings). */
export const FFHQ_256: Partial<UNetConfig> & { imageSize: number } = {
  imageSize: 256,
  modelChannels: 256,
  channelMult: [1, 1, 2, 2, 4, 4],
  numResBlocks: 2,
  attentionResolutions: [32, 16, 8],
  numHeadChannels: 64,
  resblockUpdown: true,
  useScaleShiftNorm: true,
  dropout: 0.1,
  learnSigma: true,
};
