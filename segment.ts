// Few-shot segmentation from a pre-trained UNet's decoder features (the paper's medical protocol):
// pixel-MLP heads trained on the first N labelled images, evaluated with sliding windows on the test
// split, beside a supervised UNet trained from scratch on the same labels. This file turns flags
// into options: the protocols are src/segment/medical.ts and src/segment/faces.ts, the reports
// src/report/segmentation.ts.
//
//   deno run -A segment.ts [--help] [flags]
import { mkdir, readFile, stat } from "node:fs/promises";
import { Generator, getNumThreads, keep, randn, setNumThreads, torchVersion } from "./mod.ts";
import {
  COMMON_FLAGS,
  deviceArg,
  helpText,
  limitsArg,
  parseArgs,
  type Parsed,
  runCli,
  type Spec,
  UsageError,
} from "./src/cli/args.ts";
import { probeTorsoDtype } from "./src/cli/probe.ts";
import type { SegDataset } from "./src/data/datasets/dataset.ts";
import { DDPM_SEG_CLASSES, loadDdpmSegDataset } from "./src/data/datasets/ddpm_seg.ts";
import { loadFolderDataset } from "./src/data/datasets/folder_pair.ts";
import { loadGlaS } from "./src/data/datasets/glas.ts";
import { loadMoNuSeg } from "./src/data/datasets/monuseg.ts";
import { loadSynthetic } from "./src/data/datasets/synthetic_set.ts";
import { CheckpointError } from "./src/io/common.ts";
import type { Limits } from "./src/io/limits.ts";
import { FolderLock } from "./src/io/lock.ts";
import { loadModel } from "./src/io/weights.ts";
import { checkUNetOptions, PRETRAIN_BOUNDS as B } from "./src/mdm/validate.ts";
import type { UNetConfig } from "./src/models/unet/config.ts";
import { UNet } from "./src/models/unet/unet.ts";
import { FieldError, integer, object, oneOf } from "./src/util/fields.ts";
import { writeOverlay } from "./src/report/overlays.ts";
import { facesReport, medicalReport, peakResidentMiB, type RunInfo, writeReport } from "./src/report/segmentation.ts";
import { runFacesProtocol } from "./src/segment/faces.ts";
import { featureChannels, type FeatureOptions } from "./src/segment/features.ts";
import type { HeadTrainingOptions } from "./src/segment/heads.ts";
import { runMedicalProtocol } from "./src/segment/medical.ts";

const USAGE = `Few-shot segmentation from a pre-trained MDM (or DDPM) UNet.

usage: deno run -A segment.ts [flags]

Trains --heads pixel classifiers on the decoder features of the first --labels training images, each
on random crops with features recomputed every step, evaluates each on the test split with Gaussian-
blended sliding windows, and writes report.md, report.json and overlays/ (image | ground truth |
MDM heads | supervised UNet) to --out. Without --dataset it uses the embedded synthetic nuclei set.

Datasets (--data): monuseg, the folder with train/{images,masks,annotations} and test/{images,
annotations}; glas, the Warwick QU folder; folder, train/ and test/ each with images/ and masks/
(masks paired by file stem, values = classes, 255 = ignore; the class count is --classes or the
largest training mask value + 1); ddpm, a ddpm-segmentation folder (ffhq_34, celeba_19). Links to
files are followed. The run prints how many images each split holds.`;

const SPEC = {
  checkpoint: {
    type: "string",
    help: "pre-trained weights (.safetensors or a torch.save .pt state dict)",
    default: "runs/pretrain/model.safetensors",
  },
  config: { type: "string", help: "the pre-training config.json (default: beside the checkpoint)" },
  dataset: {
    type: "string",
    help: "labelled data",
    default: "synthetic",
    choices: ["synthetic", "monuseg", "glas", "folder", "ddpm"],
  },
  protocol: {
    type: "string",
    help:
      "medical: random crops, sliding windows, heads scored one by one; faces: ddpm-segmentation's in-memory pixels, batch 64, majority vote (default for --dataset ddpm)",
    choices: ["medical", "faces"],
  },
  classes: {
    type: "int",
    help: "number of classes: ddpm (default from the name, ffhq_34 or celeba_19) and folder (default: the " +
      "largest value in the training masks + 1, 255 ignored) datasets",
    min: 2,
    max: 255,
  },
  data: {
    type: "string",
    help:
      "dataset folder (monuseg: the folder with train/ and test/; glas: the Warwick folder; folder: images/ + masks/)",
  },
  cache: { type: "string", help: "where the synthetic dataset is generated once", default: ".cache/synthetic" },
  labels: {
    type: "int",
    help: "train on the first N labelled images (sorted order)",
    default: 3,
    min: 1,
    max: 1_000_000,
  },
  heads: {
    type: "int",
    help: "independently trained heads (results are mean ± std over them)",
    default: 10,
    min: 1,
    max: 1000,
  },
  blocks: {
    type: "ints",
    help: "decoder blocks to read (default: the middle ones, 8..12 of 18)",
    min: 0,
    max: 1000,
  },
  timesteps: {
    type: "ints",
    help: "feature timesteps, each below the pre-training's diffusion steps (default: 50 for mdm, 50,150,250 for ddpm)",
    min: 0,
    max: B.diffusionSteps - 1,
  },
  l2Normalize: {
    type: "bool",
    help: "divide each crop's features by their L2 norm (the medical protocol)",
    default: true,
  },
  crop: {
    type: "int",
    help: "training crop and sliding-window side (default: the model's image size)",
    min: 8,
    max: B.imageSize,
  },
  batch: { type: "int", help: "crops per head training step", default: 16, min: 1, max: B.batch },
  lr: { type: "float", help: "Adam learning rate of the heads", default: 1e-3, min: 0, max: 10 },
  minEpochs: {
    type: "int",
    help: "epochs before early stopping may stop a head",
    default: 30,
    min: 1,
    max: 1_000_000,
  },
  maxEpochs: { type: "int", help: "epochs at most", default: 100, min: 1, max: 1_000_000 },
  patience: {
    type: "int",
    help: "stop once the loss has not improved for this many epochs",
    default: 20,
    min: 1,
    max: 1_000_000,
  },
  overlap: { type: "float", help: "sliding-window overlap", default: 0.2, min: 0, max: 0.95 },
  baseline: { type: "bool", help: "also train the supervised UNet from scratch on the same labels", default: true },
  baselineLoss: { type: "string", help: "the supervised UNet's loss", default: "ce", choices: ["ce", "dice+ce"] },
  baselineSteps: {
    type: "int",
    help: "the supervised UNet's most steps: it trains on flipped and turned crops until its training loss " +
      "(mean of 25 steps) has not improved for 3 checks, not before step 150",
    default: 600,
    min: 1,
    max: B.steps,
  },
  overlays: {
    type: "int",
    help: "test images drawn as image | truth | predictions",
    default: 4,
    min: 0,
    max: 1_000_000,
  },
  seed: { type: "int", help: "seed of heads, crops and masks", default: 0, min: 0, max: B.seed },
  ...COMMON_FLAGS,
  out: { type: "string", help: "output folder", default: "runs/segment" },
} as const satisfies Spec;

interface PretrainConfig {
  options: {
    method: "mdm" | "ddpm";
    unet: Partial<UNetConfig> & { imageSize: number };
    patchSize: number;
    diffusionSteps: number;
    maskRatio: "release" | "paper";
    schedule: "linear" | "cosine";
  };
}

async function loadDataset(
  kind: string,
  data: string | undefined,
  cache: string,
  classes: number | undefined,
  limits: Limits,
): Promise<SegDataset> {
  const need = async () => {
    if (!data) throw new UsageError(`--dataset ${kind} needs --data <folder>`);
    const info = await stat(data).catch(() => null);
    if (!info?.isDirectory()) throw new UsageError(`--data ${data}: ${info ? "not a folder" : "no such folder"}`);
    return data;
  };
  if (classes !== undefined && kind !== "ddpm" && kind !== "folder" && classes !== 2) {
    throw new UsageError(`--classes ${classes}: the ${kind} dataset has 2 classes`);
  }
  switch (kind) {
    case "synthetic":
      return await loadSynthetic(cache);
    case "monuseg":
      return await loadMoNuSeg(await need(), { limits });
    case "glas":
      return await loadGlaS(await need(), { limits });
    case "ddpm": {
      const root = await need();
      const name = root.replace(/\/+$/, "").split("/").pop()!;
      const k = classes ?? DDPM_SEG_CLASSES[name];
      if (!k) {
        throw new UsageError(
          `--dataset ddpm: give --classes for ${name} (known: ${Object.keys(DDPM_SEG_CLASSES).join(", ")})`,
        );
      }
      return await loadDdpmSegDataset(root, { name, classes: k, limits });
    }
    default:
      return await loadFolderDataset(await need(), { classes, limits });
  }
}

/** The middle decoder blocks: 8..12 of guided-diffusion's 18, the same share of other depths. */
function defaultBlocks(n: number): number[] {
  const lo = Math.floor(n * 8 / 18), hi = Math.max(lo, Math.floor(n * 12 / 18));
  return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
}

/**
 * Checks the fields of a pre-training config.json that segmentation uses (train.ts writes them
 * all under `options`; a config written by hand for another checkpoint needs only these).
 * @throws FieldError naming the field.
 */
function checkPretrainConfig(v: unknown): PretrainConfig {
  const o = object(object(v, "config").options, "options");
  const unet = checkUNetOptions(o.unet, "options.unet");
  return {
    options: {
      method: oneOf(o.method, "options.method", ["mdm", "ddpm"]),
      unet,
      patchSize: integer(o.patchSize, "options.patchSize", 1, unet.imageSize),
      diffusionSteps: integer(o.diffusionSteps, "options.diffusionSteps", 1, B.diffusionSteps),
      maskRatio: oneOf(o.maskRatio, "options.maskRatio", ["release", "paper"]),
      schedule: oneOf(o.schedule, "options.schedule", ["linear", "cosine"]),
    },
  };
}

/** The pre-training's method and the UNet options behind a checkpoint, from its config.json. */
async function readPretrainConfig(
  checkpoint: string,
  config: string | undefined,
): Promise<{ pre: PretrainConfig; configPath: string }> {
  // The folder of the checkpoint ("." for a bare file name).
  const dir = checkpoint.includes("/") ? checkpoint.replace(/\/[^/]*$/, "") || "/" : ".";
  const configPath = config ?? `${dir}/config.json`;
  let text: string;
  try {
    text = await readFile(configPath, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read the pre-training config ${configPath} (${(e as Error).message}); give --config`);
  }
  try {
    return { pre: checkPretrainConfig(JSON.parse(text)), configPath };
  } catch (e) {
    if (e instanceof SyntaxError) throw new CheckpointError(configPath, `not JSON (${e.message})`, { cause: e });
    if (e instanceof FieldError) throw new CheckpointError(configPath, e.message, { cause: e });
    throw e;
  }
}

/**
 * The decoder blocks and timesteps to read: the flags', else the protocol's defaults (the medical
 * protocol's middle blocks; ddpm-segmentation's blocks of an 18-block decoder for the faces
 * protocol), checked against the model and its pre-training.
 */
function featureChoice(
  a: Parsed<typeof SPEC>,
  protocol: "medical" | "faces",
  model: UNet,
  pre: PretrainConfig,
): { blocks: number[]; timesteps: number[] } {
  const n = model.numOutputBlocks, method = pre.options.method;
  let blocks = a.blocks;
  if (!blocks && protocol === "faces") {
    const defaults = method === "ddpm" ? [5, 6, 7, 8, 12] : [5, 6, 7, 8, 9, 10, 11, 12];
    blocks = defaults.filter((b) => b < n);
    // A smaller UNet may have none of them.
    if (blocks.length === 0) {
      throw new UsageError(
        `--protocol faces: the model has decoder blocks 0..${n - 1}, none of the default ${defaults.join(",")}; ` +
          "give --blocks",
      );
    }
  }
  blocks ??= defaultBlocks(n);
  const bad = blocks.find((b) => b >= n);
  if (bad !== undefined) throw new UsageError(`--blocks: the model has decoder blocks 0..${n - 1}, not ${bad}`);
  const timesteps = a.timesteps ?? (method === "mdm" ? [50] : [50, 150, 250]);
  const T = pre.options.diffusionSteps;
  const late = timesteps.find((x) => x >= T);
  if (late !== undefined) {
    throw new UsageError(`--timesteps: ${late} is not below the pre-training's ${T} diffusion steps`);
  }
  return { blocks, timesteps };
}

/** Checks that every labelled image holds a crop (the heads train on random crops). */
function checkCrop(crop: number, model: UNet, train: { name: string; image: { width: number; height: number } }[]) {
  const levels = model.config.channelMult.length - 1;
  if (crop % 2 ** levels !== 0) {
    throw new UsageError(`--crop ${crop}: must be a multiple of ${2 ** levels} for this UNet`);
  }
  const small = train.find((x) => x.image.width < crop || x.image.height < crop);
  if (small) {
    throw new UsageError(
      `--crop ${crop}: the labelled image ${small.name} is ${small.image.width}x${small.image.height}; give a smaller --crop`,
    );
  }
}

function runInfo(
  a: Parsed<typeof SPEC>,
  ds: SegDataset,
  method: "mdm" | "ddpm",
  features: Omit<FeatureOptions, "generator">,
  channels: number,
): RunInfo {
  return {
    dataset: ds.name,
    checkpoint: a.checkpoint,
    method,
    features,
    featureChannels: channels,
    environment: { libtorch: torchVersion(), threads: getNumThreads(), device: deviceArg(a.device) },
  };
}

/** ddpm-segmentation's protocol: 10 heads per seed, majority vote, mIoU mean ± std over seeds. */
async function runFaces(
  a: Parsed<typeof SPEC>,
  model: UNet,
  ds: SegDataset,
  pre: PretrainConfig,
  { blocks, timesteps }: { blocks: number[]; timesteps: number[] },
): Promise<number> {
  const method = pre.options.method;
  const device = deviceArg(a.device);
  if (a.labels > ds.train.length) {
    throw new UsageError(`--labels ${a.labels}: the training split has ${ds.train.length} images`);
  }
  const train = await ds.train.first(a.labels).loadAll();
  const size = train[0].image.width;
  const odd = train.find((x) => x.image.width !== size || x.image.height !== size);
  if (odd) {
    throw new UsageError(
      `--protocol faces needs square images of one size: ${odd.name} is ${odd.image.width}x${odd.image.height}, ` +
        `${train[0].name} ${size}x${size}`,
    );
  }
  // One noise image for every input, seeded once, as ddpm-segmentation draws it.
  using noiseGen = new Generator(a.seed, device);
  const features: FeatureOptions = {
    method,
    blocks,
    timesteps,
    noise: keep(randn([1, 3, size, size], { device, generator: noiseGen })),
    patchSize: pre.options.patchSize,
    diffusionSteps: pre.options.diffusionSteps,
    maskRatio: pre.options.maskRatio,
    schedule: pre.options.schedule,
  };
  const seeds = Array.from({ length: Math.max(1, Math.min(a.heads, 10)) }, (_, i) => a.seed + i);
  const result = await runFacesProtocol(model, train, ds.test, {
    classes: ds.classes,
    batch: 64,
    lr: a.lr,
    maxEpochs: a.maxEpochs,
    checkAfterEpoch: 3,
    patience: 50,
    minClassPixels: 20,
    storage: "float16",
    features,
    device,
  }, seeds);
  const report = facesReport(runInfo(a, ds, method, features, result.channels), result);
  await writeReport(a.out, report);
  console.log(report.markdown);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const a = parseArgs(SPEC, argv);
  if (a.help) {
    console.log(helpText(USAGE, SPEC));
    return 0;
  }
  setNumThreads(a.threads);
  const device = deviceArg(a.device);
  const limits = limitsArg(a);
  // Checked first: without weights the config beside them is missing too, which would hide the cause.
  if (!(await stat(a.checkpoint).catch(() => null))?.isFile()) {
    throw new UsageError(`--checkpoint ${a.checkpoint}: not found, or not a file (pre-train with train.ts first)`);
  }
  const { pre, configPath } = await readPretrainConfig(a.checkpoint, a.config);
  const method = pre.options.method;
  probeTorsoDtype(pre.options.unet.torsoDtype ?? "float32", device, {
    backward: false,
    source: `${configPath}: options.unet.torsoDtype`,
  });
  try {
    await mkdir(a.out, { recursive: true });
  } catch (e) {
    throw new UsageError(`--out ${a.out}: cannot create the folder (${(e as Error).message})`);
  }
  using _lock = FolderLock.acquire(a.out, "segment.ts");
  const { model, report: load } = loadModel(a.checkpoint, (vb) => new UNet(pre.options.unet, vb), {
    device,
    strict: false,
  });
  // The features come from everything but the output layer (`out.*`, e.g. 6 channels of a
  // learned-variance model for 3): a weight missing or mis-shaped elsewhere would leave that layer
  // random and the features meaningless.
  const used = (key: string) => !key.startsWith("out.");
  const absent = [...load.missing.filter(used), ...load.mismatched.map((m) => m.key).filter(used)];
  if (absent.length) {
    const m = load.mismatched.find((x) => used(x.key));
    const example = m
      ? `${m.key} is [${m.got.join(", ")}] in the file, [${m.expected.join(", ")}] in the model`
      : `${absent[0]} is missing`;
    throw new CheckpointError(
      a.checkpoint,
      `${absent.length} of the model's weights (from ${configPath}) are missing or of another shape, e.g. ${example}`,
    );
  }
  if (load.unexpected.length) {
    console.error(
      `warning: ${load.unexpected.length} weights of ${a.checkpoint} are not the model's, e.g. ${load.unexpected[0]}`,
    );
  }
  model.eval();
  const protocol = (a.protocol ?? (a.dataset === "ddpm" ? "faces" : "medical")) as "medical" | "faces";
  const { blocks, timesteps } = featureChoice(a, protocol, model, pre);

  const ds = await loadDataset(a.dataset, a.data, a.cache, a.classes, limits);
  console.error(
    `${ds.name}: ${ds.train.length} training and ${ds.test.length} test images, ${ds.classes} classes` +
      (a.data && a.dataset !== "synthetic" ? ` (${a.data})` : ""),
  );
  if (ds.train.length === 0 || ds.test.length === 0) {
    throw new UsageError(`--data ${a.data}: the ${ds.train.length ? "test" : "training"} split has no images`);
  }
  if (protocol === "faces") return await runFaces(a, model, ds, pre, { blocks, timesteps });
  if (a.labels > ds.train.length) {
    throw new UsageError(`--labels ${a.labels}: the training split has ${ds.train.length} images`);
  }
  const train = await ds.train.first(a.labels).loadAll();
  const crop = a.crop ?? pre.options.unet.imageSize;
  checkCrop(crop, model, train);
  // DDPM: one seeded noise crop shared by every input and timestep, as ddpm-segmentation draws it;
  // windows are crop-sized.
  using noiseGen = new Generator(a.seed, device);
  const features: Omit<FeatureOptions, "generator"> = {
    method,
    blocks,
    timesteps,
    noise: method === "ddpm" ? keep(randn([1, 3, crop, crop], { device, generator: noiseGen })) : undefined,
    l2Normalize: a.l2Normalize,
    patchSize: pre.options.patchSize,
    diffusionSteps: pre.options.diffusionSteps,
    maskRatio: pre.options.maskRatio,
    schedule: pre.options.schedule,
  };
  const head: HeadTrainingOptions = {
    classes: ds.classes,
    crop,
    batch: a.batch,
    lr: a.lr,
    minEpochs: a.minEpochs,
    maxEpochs: Math.max(a.maxEpochs, a.minEpochs),
    patience: a.patience,
    seed: a.seed,
    features,
    device,
  };
  const channels = featureChannels(model, features);
  console.error(
    `${method} features: blocks ${blocks.join(",")} at t=${features.timesteps.join(",")} → ${channels} channels; ` +
      `${a.heads} heads on ${train.length} labelled images of ${ds.name}; ${getNumThreads()} threads`,
  );

  const overlaysDir = `${a.out}/overlays`;
  await mkdir(overlaysDir, { recursive: true });
  const result = await runMedicalProtocol(model, train, ds.test, {
    heads: a.heads,
    head,
    baseline: a.baseline
      ? {
        unet: pre.options.unet,
        loss: a.baselineLoss as "ce" | "dice+ce",
        lr: 1e-4,
        // Trained to convergence on its own schedule, as a user would train it: holding it to the
        // heads' step count would flatter the heads.
        steps: a.baselineSteps,
        augment: true,
        earlyStopping: {
          monitor: "train-loss",
          every: Math.min(25, a.baselineSteps),
          patience: 3,
          minSteps: Math.min(150, a.baselineSteps),
        },
      }
      : null,
    overlap: a.overlap,
    onTestImage: async (i, ex, preds, base) => {
      if (i >= a.overlays) return;
      const name = `${overlaysDir}/${String(i).padStart(2, "0")}-${ex.name}.png`;
      await writeOverlay(name, ex.image, ex.label, base ? [preds[0], base] : [preds[0]]);
    },
  });
  const report = medicalReport(runInfo(a, ds, method, features, channels), {
    heads: a.heads,
    head,
    overlap: a.overlap,
    baselineLoss: a.baselineLoss,
    overlaysDir,
    peakResidentMiB: await peakResidentMiB(),
  }, result);
  await writeReport(a.out, report);
  console.log(report.markdown);
  return 0;
}

export { main };

if (import.meta.main) await runCli("segment.ts", main);
