// Validation of pre-training options wherever they come from: the command line, a checkpoint's
// state.json, a run's config.json. Every field is checked for its type and range and the fields
// for their agreement (a micro-batch that divides the batch, a patch that divides the crop,
// attention heads that divide the channels), so that a damaged or hand-edited file fails with the
// field's name instead of training something else or failing deep inside the model.
import { type Device, deviceCode } from "../device.ts";
import { resolveConfig, type UNetConfig } from "../models/unet/config.ts";
import { array, boolean, FieldError, integer, number, object, oneOf, onlyKeys } from "../util/fields.ts";
import type { PretrainOptions } from "./pretrain.ts";

/** The ranges of the sizes and counts of a pre-training (the command line's flags use them too). */
export const PRETRAIN_BOUNDS = {
  /** Optimizer steps. */
  steps: 1_000_000_000,
  /** Diffusion steps T (schedules hold T values). */
  diffusionSteps: 100_000,
  /** Images per optimizer step. */
  batch: 65_536,
  /** Processes training together (each takes at least one image of every batch). */
  worldSize: 65_536,
  /** Seeds: the trainer derives its streams' seeds as 3·seed + k, exact below 2^53. */
  seed: 2 ** 32 - 1,
  /** Crop side, the UNet's imageSize. */
  imageSize: 8192,
  modelChannels: 4096,
  numResBlocks: 64,
  /** Entries of channelMult, and each multiplier. */
  levels: 16,
  channelMult: 64,
  numHeads: 1024,
} as const;

const UNET_KEYS = [
  "imageSize",
  "inChannels",
  "modelChannels",
  "outChannels",
  "numResBlocks",
  "attentionResolutions",
  "channelMult",
  "dropout",
  "numHeads",
  "numHeadChannels",
  "numHeadsUpsample",
  "resblockUpdown",
  "useScaleShiftNorm",
  "useNewAttentionOrder",
  "learnSigma",
  "convResample",
  "torsoDtype",
  "channelsLast",
] as const satisfies readonly (keyof UNetConfig)[];

/** -1 ("use the other setting") or a positive integer up to `max`. */
function minusOneOr(v: unknown, field: string, max: number): number {
  return v === -1 ? -1 : integer(v, field, 1, max);
}

/**
 * Checks a UNet configuration (guided-diffusion's options, any subset beside imageSize) and that a
 * UNet can be built from it: known keys of the right types, channel counts GroupNorm can split,
 * attention resolutions that divide the image, heads that divide the channels where attention is,
 * and an image side the encoder can halve at every level.
 * @throws FieldError naming the field (under `field`, e.g. "options.unet").
 */
export function checkUNetOptions(v: unknown, field = "unet"): Partial<UNetConfig> & { imageSize: number } {
  const o = object(v, field);
  onlyKeys(o, UNET_KEYS, field);
  const f = (k: string) => `${field}.${k}`;
  const B = PRETRAIN_BOUNDS;
  const out: Partial<UNetConfig> & { imageSize: number } = {
    imageSize: integer(o.imageSize, f("imageSize"), 8, B.imageSize),
  };
  if (o.inChannels !== undefined) out.inChannels = integer(o.inChannels, f("inChannels"), 1, 64);
  if (o.modelChannels !== undefined) {
    out.modelChannels = integer(o.modelChannels, f("modelChannels"), 1, B.modelChannels);
  }
  if (o.outChannels !== undefined) out.outChannels = integer(o.outChannels, f("outChannels"), 1, 64);
  if (o.numResBlocks !== undefined) out.numResBlocks = integer(o.numResBlocks, f("numResBlocks"), 1, B.numResBlocks);
  if (o.attentionResolutions !== undefined) {
    const a = o.attentionResolutions;
    out.attentionResolutions = Array.isArray(a) && a.length === 0
      ? []
      : array(a, f("attentionResolutions"), (x, k) => integer(x, k, 1, B.imageSize));
  }
  if (o.channelMult !== undefined) {
    out.channelMult = array(o.channelMult, f("channelMult"), (x, k) => number(x, k, 1 / 64, B.channelMult), B.levels);
  }
  if (o.dropout !== undefined) out.dropout = number(o.dropout, f("dropout"), 0, 0.99);
  if (o.numHeads !== undefined) out.numHeads = integer(o.numHeads, f("numHeads"), 1, B.numHeads);
  if (o.numHeadChannels !== undefined) {
    out.numHeadChannels = minusOneOr(o.numHeadChannels, f("numHeadChannels"), B.modelChannels);
  }
  if (o.numHeadsUpsample !== undefined) {
    out.numHeadsUpsample = minusOneOr(o.numHeadsUpsample, f("numHeadsUpsample"), B.numHeads);
  }
  for (
    const k of [
      "resblockUpdown",
      "useScaleShiftNorm",
      "useNewAttentionOrder",
      "learnSigma",
      "convResample",
      "channelsLast",
    ] as const
  ) {
    if (o[k] !== undefined) out[k] = boolean(o[k], f(k));
  }
  if (o.torsoDtype !== undefined) {
    out.torsoDtype = oneOf(o.torsoDtype, f("torsoDtype"), ["float32", "float16", "bfloat16"]);
  }

  let c: UNetConfig;
  try {
    c = resolveConfig(out);
  } catch (e) {
    throw new FieldError(field, `does not describe a UNet: ${(e as Error).message.replace(/^UNet: /, "")}`);
  }
  const levels = c.channelMult.length - 1;
  if (c.imageSize % 2 ** levels !== 0) {
    throw new FieldError(
      f("imageSize"),
      `must be a multiple of ${2 ** levels} (halved at each of the ${levels} downsamplings), got ${c.imageSize}`,
    );
  }
  // Attention sits at the levels whose downsampling factor an attention resolution names, in the
  // encoder and decoder, and always in the middle block (the deepest level's channels).
  const heads = (ch: number, numHeads: number, where: string) => {
    if (c.numHeadChannels !== -1) {
      if (ch % c.numHeadChannels !== 0) {
        throw new FieldError(
          f("numHeadChannels"),
          `${c.numHeadChannels} does not divide the ${ch} channels of ${where}`,
        );
      }
    } else if (ch % numHeads !== 0) {
      throw new FieldError(f("numHeads"), `${numHeads} heads do not divide the ${ch} channels of ${where}`);
    }
  };
  const attnDs = new Set(c.attentionResolutions.map((r) => c.imageSize / r));
  const upHeads = c.numHeadsUpsample === -1 ? c.numHeads : c.numHeadsUpsample;
  c.channelMult.forEach((m, level) => {
    const ch = Math.trunc(m * c.modelChannels);
    if (attnDs.has(2 ** level)) {
      heads(ch, c.numHeads, `the attention at level ${level}`);
      heads(ch, upHeads, `the decoder's attention at level ${level}`);
    }
  });
  heads(Math.trunc(c.channelMult[levels] * c.modelChannels), c.numHeads, "the middle block's attention");
  return out;
}

const OPTION_KEYS = [
  "method",
  "loss",
  "unet",
  "lr",
  "weightDecay",
  "emaRate",
  "batch",
  "microBatch",
  "seed",
  "device",
  "steps",
  "diffusionSteps",
  "fixedT",
  "patchSize",
  "maskRatio",
  "schedule",
  "ddpmTarget",
] as const satisfies readonly (keyof PretrainOptions)[];

/**
 * Checks every field of pre-training options (as a checkpoint's state.json or a run's config.json
 * holds them) and their agreement, and returns them typed.
 * @throws FieldError naming the field (under `field`, e.g. "options").
 */
export function checkPretrainOptions(v: unknown, field = "options"): PretrainOptions {
  const o = object(v, field);
  onlyKeys(o, OPTION_KEYS, field);
  const f = (k: string) => `${field}.${k}`;
  const B = PRETRAIN_BOUNDS;
  const unet = checkUNetOptions(o.unet, f("unet"));
  for (const k of ["inChannels", "outChannels"] as const) {
    if (unet[k] !== undefined && unet[k] !== 3) {
      throw new FieldError(`${f("unet")}.${k}`, `must be 3 (RGB images), got ${unet[k]}`);
    }
  }
  if (unet.learnSigma) {
    throw new FieldError(`${f("unet")}.learnSigma`, "is not supported in pre-training (the loss compares 3 channels)");
  }
  const method = oneOf(o.method, f("method"), ["mdm", "ddpm"]);
  const batch = integer(o.batch, f("batch"), 1, B.batch);
  const microBatch = integer(o.microBatch, f("microBatch"), 1, B.batch);
  if (batch % microBatch !== 0) {
    throw new FieldError(f("microBatch"), `${microBatch} does not divide the batch ${batch}`);
  }
  const diffusionSteps = integer(o.diffusionSteps, f("diffusionSteps"), 1, B.diffusionSteps);
  const fixedT = o.fixedT === null ? null : integer(o.fixedT, f("fixedT"), 0, diffusionSteps - 1);
  const patchSize = integer(o.patchSize, f("patchSize"), 1, unet.imageSize);
  if (method === "mdm" && unet.imageSize % patchSize !== 0) {
    throw new FieldError(f("patchSize"), `${patchSize} does not divide the image size ${unet.imageSize}`);
  }
  const device = o.device;
  try {
    deviceCode(device as Device);
  } catch {
    throw new FieldError(f("device"), `must be cpu, cuda or cuda:N, got ${JSON.stringify(device)}`);
  }
  return {
    method,
    loss: oneOf(o.loss, f("loss"), ["ssim", "mse", "l1"]),
    unet,
    lr: number(o.lr, f("lr"), 0),
    weightDecay: number(o.weightDecay, f("weightDecay"), 0),
    emaRate: number(o.emaRate, f("emaRate"), 0, 1),
    batch,
    microBatch,
    seed: integer(o.seed, f("seed"), 0, B.seed),
    device: device as Device,
    steps: integer(o.steps, f("steps"), 1, B.steps),
    diffusionSteps,
    fixedT,
    patchSize,
    maskRatio: oneOf(o.maskRatio, f("maskRatio"), ["release", "paper"]),
    schedule: oneOf(o.schedule, f("schedule"), ["linear", "cosine"]),
    ddpmTarget: oneOf(o.ddpmTarget, f("ddpmTarget"), ["noise", "x0"]),
  };
}
