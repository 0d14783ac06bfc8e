// Few-shot segmentation from a pre-trained UNet's decoder features (the paper's medical protocol):
// pixel-MLP heads trained on the first N labelled images, evaluated with sliding windows on the test
// split, beside a supervised UNet trained from scratch on the same labels. This file turns flags
// into options: the protocols are src/segment/medical.ts and src/segment/faces.ts, the reports
// src/report/segmentation.ts.
//
//   deno run -A segment.ts [--help] [flags]
import { Generator, getNumThreads, keep, randn, setNumThreads, torchVersion } from "./mod.ts";
import {
  COMMON_FLAGS,
  deviceArg,
  helpText,
  parseArgs,
  type Parsed,
  runCli,
  type Spec,
  UsageError,
} from "./src/cli/args.ts";
import type { SegDataset } from "./src/data/datasets/dataset.ts";
import { DDPM_SEG_CLASSES, loadDdpmSegDataset } from "./src/data/datasets/ddpm_seg.ts";
import { loadFolderPair } from "./src/data/datasets/folder_pair.ts";
import { loadGlaS } from "./src/data/datasets/glas.ts";
import { loadMoNuSeg } from "./src/data/datasets/monuseg.ts";
import { loadSynthetic } from "./src/data/datasets/synthetic_set.ts";
import { loadModel } from "./src/io/weights.ts";
import type { UNetConfig } from "./src/models/unet/config.ts";
import { UNet } from "./src/models/unet/unet.ts";
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
MDM heads | supervised UNet) to --out. Without --dataset it uses the embedded synthetic nuclei set.`;

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
    help: "number of classes of a ddpm-segmentation dataset (default: from its name, ffhq_34 or celeba_19)",
    min: 2,
  },
  data: {
    type: "string",
    help:
      "dataset folder (monuseg: the folder with train/ and test/; glas: the Warwick folder; folder: images/ + masks/)",
  },
  cache: { type: "string", help: "where the synthetic dataset is generated once", default: ".cache/synthetic" },
  labels: { type: "int", help: "train on the first N labelled images (sorted order)", default: 3, min: 1 },
  heads: { type: "int", help: "independently trained heads (results are mean ± std over them)", default: 10, min: 1 },
  blocks: { type: "ints", help: "decoder blocks to read (default: the middle ones, 8..12 of 18)", min: 0 },
  timesteps: { type: "ints", help: "feature timesteps (default: 50 for mdm, 50,150,250 for ddpm)", min: 0 },
  l2Normalize: {
    type: "bool",
    help: "divide each crop's features by their L2 norm (the medical protocol)",
    default: true,
  },
  crop: { type: "int", help: "training crop and sliding-window side (default: the model's image size)", min: 8 },
  batch: { type: "int", help: "crops per head training step", default: 16, min: 1 },
  lr: { type: "float", help: "Adam learning rate of the heads", default: 1e-3, min: 0 },
  minEpochs: { type: "int", help: "epochs before early stopping may stop a head", default: 30, min: 1 },
  maxEpochs: { type: "int", help: "epochs at most", default: 100, min: 1 },
  patience: { type: "int", help: "stop once the loss has not improved for this many epochs", default: 20, min: 1 },
  overlap: { type: "float", help: "sliding-window overlap", default: 0.2, min: 0, max: 0.95 },
  baseline: { type: "bool", help: "also train the supervised UNet from scratch on the same labels", default: true },
  baselineLoss: { type: "string", help: "the supervised UNet's loss", default: "ce", choices: ["ce", "dice+ce"] },
  baselineSteps: { type: "int", help: "the supervised UNet's steps (default: the heads' mean)", min: 1 },
  overlays: { type: "int", help: "test images drawn as image | truth | predictions", default: 4, min: 0 },
  seed: { type: "int", help: "seed of heads, crops and masks", default: 0, min: 0 },
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
  classes?: number,
): Promise<SegDataset> {
  const need = () => {
    if (!data) throw new UsageError(`--dataset ${kind} needs --data <folder>`);
    return data;
  };
  switch (kind) {
    case "synthetic":
      return await loadSynthetic(cache);
    case "monuseg":
      return await loadMoNuSeg(need());
    case "glas":
      return await loadGlaS(need());
    case "ddpm": {
      const root = need();
      const name = root.replace(/\/+$/, "").split("/").pop()!;
      const k = classes ?? DDPM_SEG_CLASSES[name];
      if (!k) {
        throw new UsageError(
          `--dataset ddpm: give --classes for ${name} (known: ${Object.keys(DDPM_SEG_CLASSES).join(", ")})`,
        );
      }
      return await loadDdpmSegDataset(root, { name, classes: k });
    }
    default: {
      const root = need();
      const train = await loadFolderPair(`${root}/train`);
      const test = await loadFolderPair(`${root}/test`);
      return { name: root, classes: 2, train, test };
    }
  }
}

/** The middle decoder blocks: 8..12 of guided-diffusion's 18, the same share of other depths. */
function defaultBlocks(n: number): number[] {
  const lo = Math.floor(n * 8 / 18), hi = Math.max(lo, Math.floor(n * 12 / 18));
  return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
}

/** The pre-training's method and the UNet options behind a checkpoint, from its config.json. */
async function readPretrainConfig(
  checkpoint: string,
  config: string | undefined,
): Promise<{ pre: PretrainConfig; configPath: string }> {
  // The folder of the checkpoint ("." for a bare file name).
  const dir = checkpoint.includes("/") ? checkpoint.replace(/\/[^/]*$/, "") || "/" : ".";
  const configPath = config ?? `${dir}/config.json`;
  try {
    return { pre: JSON.parse(await Deno.readTextFile(configPath)), configPath };
  } catch (e) {
    throw new UsageError(`cannot read the pre-training config ${configPath} (${(e as Error).message}); give --config`);
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
  method: "mdm" | "ddpm",
  pre: PretrainConfig,
): Promise<number> {
  const device = deviceArg(a.device);
  const train = await ds.train.first(a.labels).loadAll();
  const size = train[0].image.width;
  const blocks = a.blocks ??
    (method === "ddpm" ? [5, 6, 7, 8, 12] : [5, 6, 7, 8, 9, 10, 11, 12]).filter((b) => b < model.numOutputBlocks);
  // One noise image for every input, seeded once, as ddpm-segmentation draws it.
  using noiseGen = new Generator(a.seed, device);
  const features: FeatureOptions = {
    method,
    blocks,
    timesteps: a.timesteps ?? (method === "mdm" ? [50] : [50, 150, 250]),
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
  // Checked first: without weights the config beside them is missing too, which would hide the cause.
  if (!(await Deno.stat(a.checkpoint).catch(() => null))?.isFile) {
    throw new UsageError(`--checkpoint ${a.checkpoint}: not found, or not a file (pre-train with train.ts first)`);
  }
  const { pre, configPath } = await readPretrainConfig(a.checkpoint, a.config);
  const method = pre.options.method;
  const { model, report: load } = loadModel(a.checkpoint, (vb) => new UNet(pre.options.unet, vb), {
    device,
    strict: false,
  });
  if (load.loaded.length === 0) throw new Error(`${a.checkpoint}: no weights matched the model in ${configPath}`);
  if (load.missing.length) {
    console.error(`warning: ${load.missing.length} weights missing from ${a.checkpoint}, e.g. ${load.missing[0]}`);
  }
  model.eval();

  const ds = await loadDataset(a.dataset, a.data, a.cache, a.classes);
  if ((a.protocol ?? (a.dataset === "ddpm" ? "faces" : "medical")) === "faces") {
    return await runFaces(a, model, ds, method, pre);
  }
  if (a.labels > ds.train.length) {
    throw new UsageError(`--labels ${a.labels}: the training split has ${ds.train.length} images`);
  }
  const train = await ds.train.first(a.labels).loadAll();
  const crop = a.crop ?? pre.options.unet.imageSize;
  const blocks = a.blocks ?? defaultBlocks(model.numOutputBlocks);
  // DDPM: one seeded noise crop shared by every input and timestep, as ddpm-segmentation draws it;
  // windows are crop-sized.
  using noiseGen = new Generator(a.seed, device);
  const features: Omit<FeatureOptions, "generator"> = {
    method,
    blocks,
    timesteps: a.timesteps ?? (method === "mdm" ? [50] : [50, 150, 250]),
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
  await Deno.mkdir(overlaysDir, { recursive: true });
  const result = await runMedicalProtocol(model, train, ds.test, {
    heads: a.heads,
    head,
    baseline: a.baseline
      ? { unet: pre.options.unet, loss: a.baselineLoss as "ce" | "dice+ce", lr: 1e-4, steps: a.baselineSteps }
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

if (import.meta.main) await runCli("segment.ts", main);
