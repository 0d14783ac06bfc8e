// train.ts's flags, its presets, and their translation into PretrainOptions.
import { FFHQ_256, MEDICAL_256, type UNetConfig } from "../models/unet/config.ts";
import { PRETRAIN_DEFAULTS, type PretrainOptions } from "../mdm/pretrain.ts";
import { checkPretrainOptions, PRETRAIN_BOUNDS as B } from "../mdm/validate.ts";
import { FieldError } from "../util/fields.ts";
import process from "node:process";
import { type DistEnv, distEnv } from "../dist/env.ts";
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
  fresh: {
    type: "bool",
    help: "start over in an --out that holds another run's checkpoints, moving them to checkpoints.previous/",
    default: false,
  },
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
  nproc: {
    type: "int",
    help: "train with N processes on this machine (data parallel: --batch is split among them, each with its " +
      "own --threads, by default the cores divided among them)",
    min: 1,
    max: 1024,
  },
  worldSize: {
    type: "int",
    help: "join a data-parallel run of this many processes in all, on one or several machines (or WORLD_SIZE)",
    min: 1,
    max: B.worldSize,
  },
  rank: {
    type: "int",
    help: "this process's rank in it, 0..world size - 1; rank 0 writes --out (or RANK)",
    min: 0,
    max: B.worldSize - 1,
  },
  localRank: {
    type: "int",
    help: "its rank on this machine: with --device cuda, the GPU it takes (or LOCAL_RANK; default: --rank)",
    min: 0,
    max: B.worldSize - 1,
  },
  masterAddr: { type: "string", help: "host name or address of rank 0's machine (or MASTER_ADDR)" },
  masterPort: {
    type: "int",
    help: "port where rank 0 serves the rendezvous (or MASTER_PORT; default 29500, with --nproc a free one)",
    min: 1,
    max: 65535,
  },
  distTimeout: {
    type: "int",
    help: "seconds a process waits for the others (joining, each step, rank 0's saves) before failing",
    default: 1800,
    min: 1,
    max: 365 * 24 * 3600,
  },
} as const satisfies Spec;

export type PretrainArgs = Parsed<typeof PRETRAIN_SPEC>;

/** The flags that override the preset's UNet config, under the config's own names. */
const UNET_FLAGS = [
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

/**
 * Merges the preset with the flags given, and validates what the flags alone cannot. With
 * `worldSize` processes (data parallel), --batch is the global batch: it must split into whole
 * micro-batches per process, and the micro-batch defaults to the preset's or the per-process share,
 * whichever is smaller.
 */
export function pretrainOptionsFrom(a: PretrainArgs, worldSize = 1): PretrainOptions {
  const p = PRESETS[a.preset];
  const device = deviceArg(a.device);
  const unet: Partial<UNetConfig> & { imageSize: number } = { ...p.unet, imageSize: a.crop ?? p.unet.imageSize };
  for (const k of UNET_FLAGS) if (a[k] !== undefined) (unet as Record<string, unknown>)[k] = a[k];
  const method = a.method as "mdm" | "ddpm";
  const batch = a.batch ?? p.batch;
  if (batch % worldSize !== 0) {
    throw new UsageError(`--batch ${batch} does not split among ${worldSize} processes (each takes whole images)`);
  }
  const microBatch = a.microBatch ?? Math.min(p.microBatch, batch / worldSize);
  if (worldSize === 1 && batch % microBatch !== 0) {
    throw new UsageError(`--batch ${batch} must be a multiple of --micro-batch ${microBatch}`);
  }
  if (batch % (worldSize * microBatch) !== 0) {
    throw new UsageError(
      `--batch ${batch} must be a multiple of ${worldSize} processes × --micro-batch ${microBatch} ` +
        `(${worldSize * microBatch}): each process takes whole micro-batches of the global batch`,
    );
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
  ...UNET_FLAGS,
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

/** Where this process stands in a data-parallel run, from the flags and torchrun's variables. */
export interface Distributed {
  /** --nproc N above 1: start N local processes (this one only waits for them). */
  launch: number | null;
  /** This process is one rank of a run of several: its place, or null for a single process. */
  worker: DistEnv | null;
  /** --dist-timeout, in milliseconds. */
  timeoutMs: number;
}

const DIST_FLAGS = {
  worldSize: ["--world-size", "WORLD_SIZE"],
  rank: ["--rank", "RANK"],
  localRank: ["--local-rank", "LOCAL_RANK"],
  masterAddr: ["--master-addr", "MASTER_ADDR"],
  masterPort: ["--master-port", "MASTER_PORT"],
} as const;

/**
 * Resolves --nproc, --world-size, --rank, --local-rank, --master-addr and --master-port, each of
 * which overrides its torchrun variable in `env` (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR,
 * MASTER_PORT). A world of one process is a single process. MASTER_PORT defaults to 29500 (torchrun's).
 * @throws UsageError for inconsistent flags (--nproc with --rank, --rank without --world-size, a
 * rank outside the world), naming the flag or the variable.
 */
export function distributedFrom(a: PretrainArgs, env: Record<string, string | undefined> = process.env): Distributed {
  const timeoutMs = a.distTimeout * 1000;
  const given = (Object.keys(DIST_FLAGS) as (keyof typeof DIST_FLAGS)[]).filter((k) => a[k] !== undefined);
  if (a.nproc !== undefined) {
    const clash = given.filter((k) => k !== "masterPort");
    if (clash.length) {
      throw new UsageError(
        `--nproc starts its own processes on this machine; it does not take ${
          clash.map((k) => DIST_FLAGS[k][0]).join(", ")
        } (those join processes started on several machines, without --nproc)`,
      );
    }
    const inherited = (["WORLD_SIZE", "RANK"] as const).filter((v) => env[v]);
    if (inherited.length) {
      throw new UsageError(
        `--nproc ${a.nproc}: ${inherited.map((v) => `${v}=${env[v]}`).join(" and ")} ` +
          `${inherited.length > 1 ? "are" : "is"} set, as in a process that is already one rank of a run; ` +
          "unset them or drop --nproc",
      );
    }
    return { launch: a.nproc > 1 ? a.nproc : null, worker: null, timeoutMs };
  }
  const vars: Record<string, string | undefined> = {
    WORLD_SIZE: env.WORLD_SIZE,
    RANK: env.RANK,
    LOCAL_RANK: env.LOCAL_RANK,
    LOCAL_WORLD_SIZE: env.LOCAL_WORLD_SIZE,
    MASTER_ADDR: env.MASTER_ADDR,
    MASTER_PORT: env.MASTER_PORT,
  };
  for (const k of given) vars[DIST_FLAGS[k][1]] = String(a[k]);
  // How the user set each value: the flag, or the variable.
  const named = (k: keyof typeof DIST_FLAGS) =>
    a[k] !== undefined ? `${DIST_FLAGS[k][0]} ${a[k]}` : `${DIST_FLAGS[k][1]}=${vars[DIST_FLAGS[k][1]]}`;
  if (!vars.WORLD_SIZE) {
    if (given.length) {
      throw new UsageError(
        `${given.map((k) => DIST_FLAGS[k][0]).join(", ")} need${given.length > 1 ? "" : "s"} --world-size ` +
          "(or WORLD_SIZE): how many processes take part",
      );
    }
    if (vars.RANK) throw new UsageError(`RANK=${vars.RANK} is set but WORLD_SIZE is not: set both, or neither`);
    return { launch: null, worker: null, timeoutMs };
  }
  const size = Number(vars.WORLD_SIZE);
  if (size > 1) {
    if (!vars.RANK) {
      throw new UsageError(`${named("worldSize")} needs --rank (or RANK): this process's, 0..${size - 1}`);
    }
    if (!vars.MASTER_ADDR?.trim()) {
      throw new UsageError(`${named("worldSize")} needs --master-addr (or MASTER_ADDR): the host where rank 0 runs`);
    }
  }
  for (const k of ["rank", "localRank"] as const) {
    const v = vars[DIST_FLAGS[k][1]];
    if (a[k] !== undefined && Number.isInteger(size) && size >= 1 && Number(v) >= size) {
      throw new UsageError(`${named(k)} must be below ${named("worldSize")}`);
    }
  }
  vars.MASTER_PORT ||= "29500";
  let worker: DistEnv | null;
  try {
    worker = distEnv(vars);
  } catch (e) {
    // What is left is a variable's value (the flags are checked by the parser): its message names it.
    if (!(e instanceof RangeError)) throw e;
    throw new UsageError(e.message);
  }
  return { launch: null, worker: worker && worker.worldSize > 1 ? worker : null, timeoutMs };
}
