// train.ts's flags, its presets, and their translation into PretrainOptions.
import { FFHQ_256, MEDICAL_256, type UNetConfig } from "../models/unet/config.ts";
import { PRETRAIN_DEFAULTS, type PretrainOptions } from "../mdm/pretrain.ts";
import { checkPretrainOptions, PRETRAIN_BOUNDS as B } from "../mdm/validate.ts";
import { FieldError } from "../util/fields.ts";
import { COMMON_FLAGS, deviceArg, kebab, type Parsed, type Spec, UsageError } from "./args.ts";

interface Preset {
  unet: Partial<UNetConfig> & { imageSize: number };
  batch: number;
  microBatch: number;
  lr: number;
  emaRate: number;
  steps: number;
  every: number;
}

/** tiny: a real pre-training that finishes in a few minutes on two CPU cores. */
export const PRESETS: Record<string, Preset> = {
  tiny: {
    unet: {
      imageSize: 64,
      modelChannels: 32,
      channelMult: [1, 2, 2],
      numResBlocks: 1,
      attentionResolutions: [16],
      numHeadChannels: 32,
      resblockUpdown: true,
    },
    batch: 8,
    microBatch: 8,
    lr: 5e-4,
    emaRate: 0.999,
    steps: 300,
    every: 100,
  },
  medical: { unet: MEDICAL_256, batch: 128, microBatch: 8, lr: 1e-4, emaRate: 0.9999, steps: 5000, every: 500 },
  ffhq: { unet: FFHQ_256, batch: 128, microBatch: 8, lr: 1e-4, emaRate: 0.9999, steps: 100000, every: 5000 },
};

export const PRETRAIN_SPEC = {
  preset: {
    type: "string",
    help: "starting configuration; other flags override it",
    default: "tiny",
    choices: Object.keys(PRESETS),
  },
  method: {
    type: "string",
    help: "corruption: patch masking (MDM) or Gaussian noise (DDPM)",
    default: "mdm",
    choices: ["mdm", "ddpm"],
  },
  loss: {
    type: "string",
    help: "reconstruction loss (default: ssim for mdm, mse for ddpm)",
    choices: ["ssim", "mse", "l1"],
  },
  data: {
    type: "string",
    help: "folder of training images (png, jpg, tif; searched recursively, links followed, folders named " +
      "masks, labels or annotations skipped); default: the synthetic set",
  },
  cache: { type: "string", help: "where the synthetic dataset is generated once", default: ".cache/synthetic" },
  padSmall: {
    type: "bool",
    help: "pad images smaller than the crop instead of stopping with an error",
    default: false,
  },
  crop: { type: "int", help: "square crop side, also the UNet's imageSize", min: 8, max: B.imageSize },
  batch: { type: "int", help: "images per optimizer step", min: 1, max: B.batch },
  microBatch: {
    type: "int",
    help: "images per forward pass (gradient accumulation when below --batch)",
    min: 1,
    max: B.batch,
  },
  lr: { type: "float", help: "AdamW learning rate (constant)", min: 0 },
  weightDecay: { type: "float", help: "AdamW weight decay", default: 0, min: 0 },
  emaRate: { type: "float", help: "EMA decay of the weights", min: 0, max: 1 },
  steps: {
    type: "int",
    help: "optimizer steps in total (a resumed run continues to this count)",
    min: 1,
    max: B.steps,
  },
  seed: {
    type: "int",
    help: "seed of every random stream (data order, timesteps, masks, noise, init)",
    default: 0,
    min: 0,
    max: B.seed,
  },
  ...COMMON_FLAGS,
  out: { type: "string", help: "output folder", default: "runs/pretrain" },
  checkpointEvery: {
    type: "int",
    help: "save a checkpoint every N steps (0: only at the end)",
    min: 0,
    max: B.steps,
  },
  keepCheckpoints: { type: "int", help: "checkpoints kept (the newest)", default: 3, min: 1, max: 1_000_000 },
  resume: { type: "bool", help: "continue from the newest checkpoint in --out", default: false },
  resumeFrom: { type: "string", help: "continue from this checkpoint folder" },
  pictureEvery: {
    type: "int",
    help: "write a reconstruction picture every N steps (0: never)",
    min: 0,
    max: B.steps,
  },
  pictureTimesteps: {
    type: "ints",
    help: "timesteps shown in the pictures (each below --diffusion-steps)",
    default: [250, 500, 750],
    min: 0,
    max: B.diffusionSteps - 1,
  },
  fixedT: {
    type: "int",
    help: "train at this timestep only (the paper's 'no diffusion' ablation)",
    min: 0,
    max: B.diffusionSteps - 1,
  },
  diffusionSteps: {
    type: "int",
    help: "T, the number of diffusion steps",
    default: 1000,
    min: 1,
    max: B.diffusionSteps,
  },
  patchSize: { type: "int", help: "MDM patch side", default: 8, min: 1, max: B.imageSize },
  maskRatio: {
    type: "string",
    help: "mask ratio from t: release (t/T) or paper (t/(T+1))",
    default: "release",
    choices: ["release", "paper"],
  },
  schedule: { type: "string", help: "DDPM beta schedule", default: "linear", choices: ["linear", "cosine"] },
  ddpmTarget: { type: "string", help: "what the DDPM model predicts", default: "noise", choices: ["noise", "x0"] },
  modelChannels: { type: "int", help: "UNet base channels", min: 1, max: B.modelChannels },
  numResBlocks: { type: "int", help: "ResBlocks per level", min: 1, max: B.numResBlocks },
  channelMult: { type: "ints", help: "channel multiplier per level", min: 1, max: B.channelMult },
  attentionResolutions: { type: "ints", help: "feature resolutions with attention", min: 1, max: B.imageSize },
  numHeads: { type: "int", help: "attention heads (when --num-head-channels is -1)", min: 1, max: B.numHeads },
  numHeadChannels: {
    type: "int",
    help: "channels per attention head (-1: use --num-heads)",
    min: -1,
    max: B.modelChannels,
  },
  dropout: { type: "float", help: "ResBlock dropout", min: 0, max: 0.99 },
  resblockUpdown: { type: "bool", help: "resample with ResBlocks" },
  useScaleShiftNorm: { type: "bool", help: "scale-shift timestep conditioning" },
  useNewAttentionOrder: { type: "bool", help: "split q, k, v before the heads" },
  torsoDtype: { type: "string", help: "compute dtype of the UNet torso", choices: ["float32", "float16", "bfloat16"] },
} as const satisfies Spec;

export type PretrainArgs = Parsed<typeof PRETRAIN_SPEC>;

/** Merges the preset with the flags given, and validates what the flags alone cannot. */
export function pretrainOptionsFrom(a: PretrainArgs): PretrainOptions {
  const p = PRESETS[a.preset];
  const device = deviceArg(a.device);
  const unet: Partial<UNetConfig> & { imageSize: number } = { ...p.unet, imageSize: a.crop ?? p.unet.imageSize };
  const keys = [
    "modelChannels",
    "numResBlocks",
    "channelMult",
    "attentionResolutions",
    "numHeads",
    "numHeadChannels",
    "dropout",
    "resblockUpdown",
    "useScaleShiftNorm",
    "useNewAttentionOrder",
    "torsoDtype",
  ] as const;
  for (const k of keys) if (a[k] !== undefined) (unet as Record<string, unknown>)[k] = a[k];
  const method = a.method as "mdm" | "ddpm";
  const batch = a.batch ?? p.batch;
  const microBatch = a.microBatch ?? Math.min(p.microBatch, batch);
  if (batch % microBatch !== 0) {
    throw new UsageError(`--batch ${batch} must be a multiple of --micro-batch ${microBatch}`);
  }
  const fixedT = a.fixedT ?? null;
  if (fixedT !== null && fixedT >= a.diffusionSteps) {
    throw new UsageError(`--fixed-t must be below --diffusion-steps (${a.diffusionSteps}), got ${fixedT}`);
  }
  if (method === "mdm" && unet.imageSize % a.patchSize !== 0) {
    throw new UsageError(`--patch-size ${a.patchSize} must divide the crop ${unet.imageSize}`);
  }
  for (const t of a.pictureTimesteps) {
    if (t >= a.diffusionSteps) {
      throw new UsageError(`--picture-timesteps: ${t} is not below --diffusion-steps (${a.diffusionSteps})`);
    }
  }
  if (a.numHeadChannels === 0) throw new UsageError("--num-head-channels must be -1 or positive, got 0");
  const options: PretrainOptions = {
    ...PRETRAIN_DEFAULTS,
    method,
    loss: (a.loss ?? (method === "mdm" ? "ssim" : "mse")) as PretrainOptions["loss"],
    unet,
    lr: a.lr ?? p.lr,
    weightDecay: a.weightDecay,
    emaRate: a.emaRate ?? p.emaRate,
    batch,
    microBatch,
    seed: a.seed,
    device,
    steps: a.steps ?? p.steps,
    diffusionSteps: a.diffusionSteps,
    fixedT,
    patchSize: a.patchSize,
    maskRatio: a.maskRatio as PretrainOptions["maskRatio"],
    schedule: a.schedule as PretrainOptions["schedule"],
    ddpmTarget: a.ddpmTarget as PretrainOptions["ddpmTarget"],
  };
  try {
    checkPretrainOptions(options);
  } catch (e) {
    if (!(e instanceof FieldError)) throw e;
    throw new UsageError(`${flagOf(e.field)}: ${e.problem}`);
  }
  return options;
}

/** The flag behind an options field: "options.unet.numHeads" -> --num-heads, imageSize -> --crop. */
function flagOf(field: string): string {
  const name = field.split(".").pop()!.replace(/\[\d+\]$/, "");
  if (name === "unet") return "the UNet flags";
  return `--${name === "imageSize" ? "crop" : kebab(name)}`;
}

// The flags that shape the model or its training: a resumed run takes them from its checkpoint.
const RUN_SHAPING = [
  "preset",
  "method",
  "loss",
  "crop",
  "batch",
  "microBatch",
  "lr",
  "weightDecay",
  "emaRate",
  "seed",
  "device",
  "fixedT",
  "diffusionSteps",
  "patchSize",
  "maskRatio",
  "schedule",
  "ddpmTarget",
  "modelChannels",
  "numResBlocks",
  "channelMult",
  "attentionResolutions",
  "numHeads",
  "numHeadChannels",
  "dropout",
  "resblockUpdown",
  "useScaleShiftNorm",
  "useNewAttentionOrder",
  "torsoDtype",
] as const satisfies readonly (keyof typeof PRETRAIN_SPEC)[];

/** The run-shaping flags (see RUN_SHAPING) given in `argv`, as written there (`--lr`). */
export function runShapingFlagsGiven(argv: readonly string[]): string[] {
  const names = new Set<string>(RUN_SHAPING.map(kebab));
  const given = argv.filter((a) => a.startsWith("--")).map((a) => a.slice(2).split("=")[0])
    .map((n) => (!names.has(n) && n.startsWith("no-") ? n.slice(3) : n))
    .filter((n) => names.has(n));
  return [...new Set(given)].map((n) => `--${n}`);
}

/** How often to checkpoint and draw, unless given. */
export function intervals(a: PretrainArgs): { checkpointEvery: number; pictureEvery: number } {
  const every = PRESETS[a.preset].every;
  return { checkpointEvery: a.checkpointEvery ?? every, pictureEvery: a.pictureEvery ?? every };
}
