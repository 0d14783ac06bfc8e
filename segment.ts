// Few-shot segmentation from a pre-trained UNet's decoder features (the paper's medical protocol):
// pixel-MLP heads trained on the first N labelled images, evaluated with sliding windows on the test
// split, beside a supervised UNet trained from scratch on the same labels.
//
//   deno run -A segment.ts [--help] [flags]
import { getNumThreads, setNumThreads, torchVersion } from "./mod.ts";
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
import { Generator, keep, randn } from "./mod.ts";
import { collectPixels, type FacesOptions, predictFaces, trainFacesHead } from "./src/segment/faces.ts";
import type { Image } from "./src/data/image.ts";
import { writePng } from "./src/data/image.ts";
import {
  DDPM_SEG_CLASSES,
  type LabelledImage,
  loadDdpmSegDataset,
  loadFolderPair,
  loadGlaS,
  loadMoNuSeg,
  loadSynthetic,
  type SegDataset,
} from "./src/data/segsets.ts";
import { loadModelWeights } from "./src/io/checkpoint.ts";
import type { UNetConfig } from "./src/models/unet/config.ts";
import { UNet } from "./src/models/unet/unet.ts";
import { rootBuilder } from "./src/nn/module.ts";
import { grid } from "./src/report/grid.ts";
import { Progress } from "./src/report/progress.ts";
import { predictBaseline, trainBaseline } from "./src/segment/baseline.ts";
import { featureChannels, type FeatureOptions } from "./src/segment/features.ts";
import { type HeadTrainingOptions, predictHeads, trainHead } from "./src/segment/heads.ts";
import {
  ajiBinary,
  ajiInstance,
  connectedComponents,
  dice,
  glasIoUFromDice,
  iou,
  MeanIoU,
  meanStd,
} from "./src/segment/metrics.ts";

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

function rgbOfLabels(label: Uint8Array, w: number, h: number): Image {
  const palette = [[0, 0, 0], [255, 255, 255], [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48]];
  const data = new Uint8Array(w * h * 3);
  for (let p = 0; p < w * h; p++) {
    data.set(label[p] === 255 ? [128, 128, 128] : palette[label[p] % palette.length], p * 3);
  }
  return { width: w, height: h, channels: 3, data };
}

interface ImageScores {
  dice: number;
  iou: number;
  ajiBinary: number;
  ajiInstance: number | null;
}

function binaryScores(pred: Uint8Array, ex: LabelledImage): ImageScores {
  const target = Uint8Array.from(ex.label, (v) => (v === 255 ? 0 : v > 0 ? 1 : 0));
  const p = Uint8Array.from(pred, (v) => (v > 0 ? 1 : 0));
  let ajiI: number | null = null;
  if (ex.instances) ajiI = ajiInstance(connectedComponents(p, ex.image.width, ex.image.height, 4).labels, ex.instances);
  return { dice: dice(p, target), iou: iou(p, target), ajiBinary: ajiBinary(p, target), ajiInstance: ajiI };
}

const pct = (x: number) => (100 * x).toFixed(2);

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
  const noise = keep(randn([1, 3, size, size], { device, generator: noiseGen }));
  const features: FeatureOptions = {
    method,
    blocks,
    timesteps: a.timesteps ?? (method === "mdm" ? [50] : [50, 150, 250]),
    noise,
    patchSize: pre.options.patchSize,
    diffusionSteps: pre.options.diffusionSteps,
    maskRatio: pre.options.maskRatio,
    schedule: pre.options.schedule,
  };
  const o: FacesOptions = {
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
  };
  const t0 = performance.now();
  const { x, y } = collectPixels(model, train, o);
  console.error(`faces protocol: ${x.size(0)} labelled pixels × ${x.size(1)} features in memory`);
  const seeds = Array.from({ length: Math.max(1, Math.min(a.heads, 10)) }, (_, i) => a.seed + i);
  const mious: number[] = [];
  const test = await ds.test.loadAll();
  for (const seed of seeds) {
    const heads = Array.from({ length: 10 }, (_, h) => trainFacesHead(x, y, o, seed * 100 + h).classifier);
    const acc = new MeanIoU(ds.classes);
    for (const ex of test) acc.update(predictFaces(model, heads, ex.image, o), ex.label);
    mious.push(acc.mean());
    heads.forEach((h) => h.parameters().forEach((p) => p.dispose()));
  }
  const m = meanStd(mious);
  const report = {
    dataset: ds.name,
    protocol: "faces",
    labelledImages: train.map((e) => e.name),
    testImages: test.length,
    features: { ...features, noise: undefined, channels: x.size(1) },
    seeds,
    mIoU: { ...m, perSeed: mious },
    seconds: (performance.now() - t0) / 1000,
  };
  await Deno.mkdir(a.out, { recursive: true });
  await Deno.writeTextFile(`${a.out}/report.json`, JSON.stringify(report, null, 2) + "\n");
  const md =
    `# Few-shot segmentation (faces protocol): ${ds.name}\n\nmIoU over ${seeds.length} seeds (10-head majority vote each): ` +
    `${pct(m.mean)} ± ${Number.isFinite(m.std) ? pct(m.std) : "–"} %\n`;
  await Deno.writeTextFile(`${a.out}/report.md`, md);
  console.log(md);
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
  // The folder of the checkpoint ("." for a bare file name).
  const dir = a.checkpoint.includes("/") ? a.checkpoint.replace(/\/[^/]*$/, "") || "/" : ".";
  const configPath = a.config ?? `${dir}/config.json`;
  let pre: PretrainConfig;
  try {
    pre = JSON.parse(await Deno.readTextFile(configPath));
  } catch (e) {
    throw new UsageError(`cannot read the pre-training config ${configPath} (${(e as Error).message}); give --config`);
  }
  const method = pre.options.method;
  const model = new UNet(pre.options.unet, rootBuilder({ device }));
  const load = loadModelWeights(model, a.checkpoint, { strict: false });
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
  // DDPM: one seeded noise crop shared by every input and timestep (REFERENCE §5); windows are crop-sized.
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
  const headOpts: HeadTrainingOptions = {
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
  const dims = featureChannels(model, features);
  console.error(
    `${method} features: blocks ${blocks.join(",")} at t=${features.timesteps.join(",")} → ${dims} channels; ` +
      `${a.heads} heads on ${train.length} labelled images of ${ds.name}; ${getNumThreads()} threads`,
  );

  await Deno.mkdir(`${a.out}/overlays`, { recursive: true });
  const progress = new Progress({ total: a.heads, label: "heads", every: 1 });
  const heads = [], headReports = [];
  const tTrain = performance.now();
  for (let h = 0; h < a.heads; h++) {
    const { classifier, report } = trainHead(model, train, headOpts, h);
    heads.push(classifier);
    headReports.push(report);
    progress.update(h + 1, { epochs: report.epochs, loss: report.finalLoss });
  }
  const trainSeconds = (performance.now() - tTrain) / 1000;

  let baseline = null;
  if (a.baseline) {
    const steps = a.baselineSteps ?? Math.round(headReports.reduce((s, r) => s + r.steps, 0) / headReports.length);
    console.error(`supervised UNet from scratch: ${steps} steps of ${a.batch} crops`);
    baseline = {
      ...trainBaseline(train, {
        unet: pre.options.unet,
        classes: ds.classes,
        crop,
        batch: a.batch,
        steps,
        lr: 1e-4,
        loss: a.baselineLoss as "ce" | "dice+ce",
        seed: a.seed,
        device,
      }),
      steps,
    };
  }

  const sliding = { window: crop, overlap: a.overlap };
  const binary = ds.classes === 2;
  const perHead: ImageScores[][] = heads.map(() => []);
  const perHeadIoU = heads.map(() => new MeanIoU(ds.classes));
  const baseScores: ImageScores[] = [];
  const baseIoU = new MeanIoU(ds.classes);
  const trivial = { background: [] as number[], foreground: [] as number[] };
  const testProgress = new Progress({ total: ds.test.length, label: "test", every: 1 });
  const tTest = performance.now();
  let i = 0;
  for await (const ex of ds.test) {
    const preds = predictHeads(model, heads, ex.image, { features, device, seed: a.seed, sliding });
    const base = baseline ? predictBaseline(baseline.model, ex.image, { device, sliding }) : null;
    preds.forEach((p, h) => binary ? perHead[h].push(binaryScores(p, ex)) : perHeadIoU[h].update(p, ex.label));
    if (base) binary ? baseScores.push(binaryScores(base, ex)) : baseIoU.update(base, ex.label);
    if (binary) {
      const n = ex.label.length;
      trivial.background.push(binaryScores(new Uint8Array(n), ex).dice);
      trivial.foreground.push(binaryScores(new Uint8Array(n).fill(1), ex).dice);
    }
    if (i < a.overlays) {
      const { width: w, height: h } = ex.image;
      const row = [ex.image, rgbOfLabels(ex.label, w, h), rgbOfLabels(preds[0], w, h)];
      if (base) row.push(rgbOfLabels(base, w, h));
      await writePng(`${a.out}/overlays/${String(i).padStart(2, "0")}-${ex.name}.png`, grid([row]));
    }
    testProgress.update(++i);
  }
  const testSeconds = (performance.now() - tTest) / 1000;

  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
  const summarize = (scores: ImageScores[][]) => {
    const perRun = scores.map((s) => ({
      dice: mean(s.map((x) => x.dice)),
      iou: mean(s.map((x) => x.iou)),
      ajiBinary: mean(s.map((x) => x.ajiBinary)),
      ajiInstance: s.every((x) => x.ajiInstance !== null) ? mean(s.map((x) => x.ajiInstance!)) : null,
    }));
    const ms = (f: (r: typeof perRun[number]) => number | null) => {
      const v = perRun.map(f).filter((x): x is number => x !== null);
      return v.length ? meanStd(v) : null;
    };
    return {
      dice: ms((r) => r.dice),
      iouPerImage: ms((r) => r.iou),
      glasIoUFromDice: ms((r) => glasIoUFromDice(r.dice)),
      ajiBinaryAuthors: ms((r) => r.ajiBinary),
      ajiInstanceChallenge: ms((r) => r.ajiInstance),
    };
  };
  const results = binary
    ? {
      mdmHeads: summarize(perHead),
      supervisedUNet: baseline ? summarize([baseScores]) : null,
      trivialAllBackground: { dice: mean(trivial.background) },
      trivialAllForeground: { dice: mean(trivial.foreground) },
    }
    : {
      mdmHeads: { mIoU: meanStd(perHeadIoU.map((m) => m.mean())) },
      supervisedUNet: baseline ? { mIoU: baseIoU.mean() } : null,
    };
  const peakMiB = Number(/VmHWM:\s+(\d+)/.exec(await Deno.readTextFile("/proc/self/status"))?.[1] ?? 0) / 1024;
  const report = {
    dataset: ds.name,
    labelledImages: train.map((x) => x.name),
    testImages: ds.test.length,
    checkpoint: a.checkpoint,
    method,
    features: { ...features, noise: undefined, channels: dims },
    heads: {
      count: a.heads,
      training: headReports,
      crop,
      batch: a.batch,
      lr: a.lr,
      minEpochs: a.minEpochs,
      maxEpochs: headOpts.maxEpochs,
      patience: a.patience,
    },
    supervised: baseline ? { steps: baseline.steps, seconds: baseline.seconds, loss: a.baselineLoss } : null,
    results,
    timings: { headTrainingSeconds: trainSeconds, testSeconds, peakResidentMiB: peakMiB },
    environment: { libtorch: torchVersion(), threads: getNumThreads(), device },
  };
  await Deno.writeTextFile(`${a.out}/report.json`, JSON.stringify(report, null, 2) + "\n");

  const fmt = (m: { mean: number; std: number } | null | undefined) =>
    m ? `${pct(m.mean)} ± ${Number.isFinite(m.std) ? pct(m.std) : "–"}` : "–";
  const lines = [
    `# Few-shot segmentation: ${ds.name}`,
    "",
    `${method.toUpperCase()} features from \`${a.checkpoint}\` (blocks ${blocks.join(", ")}, t = ${
      features.timesteps.join(", ")
    }, ${dims} channels); ` +
    `${a.heads} heads trained on the first ${train.length} labelled images; ${ds.test.length} test images, sliding window ${crop} with overlap ${a.overlap}.`,
    "",
  ];
  if (binary) {
    const r = results as {
      mdmHeads: ReturnType<typeof summarize>;
      supervisedUNet: ReturnType<typeof summarize> | null;
      trivialAllBackground: { dice: number };
      trivialAllForeground: { dice: number };
    };
    lines.push(
      "Scores in %, mean ± std over heads (the supervised UNet is one run). AJI (authors') is computed on binary masks, as the",
      "MDM authors did, and equals foreground IoU; AJI (challenge) is the MoNuSeg challenge's instance AJI, predicted instances",
      "being the 4-connected components of the prediction.",
      "",
      "| method | Dice | IoU (per image) | IoU from Dice (GlaS) | AJI (authors', binary) | AJI (challenge, instances) |",
      "|---|---|---|---|---|---|",
    );
    const row = (name: string, s: ReturnType<typeof summarize>) =>
      `| ${name} | ${fmt(s.dice)} | ${fmt(s.iouPerImage)} | ${fmt(s.glasIoUFromDice)} | ${fmt(s.ajiBinaryAuthors)} | ${
        fmt(s.ajiInstanceChallenge)
      } |`;
    lines.push(row(`${method.toUpperCase()} + pixel MLP (${a.heads} heads)`, r.mdmHeads));
    if (r.supervisedUNet) {
      lines.push(row(`supervised UNet from scratch (${baseline!.steps} steps, ${a.baselineLoss})`, r.supervisedUNet));
    }
    lines.push(`| all background (trivial) | ${pct(r.trivialAllBackground.dice)} | | | | |`);
    lines.push(`| all foreground (trivial) | ${pct(r.trivialAllForeground.dice)} | | | | |`);
  } else {
    const r = results as { mdmHeads: { mIoU: { mean: number; std: number } }; supervisedUNet: { mIoU: number } | null };
    lines.push(
      "| method | mIoU (%) |",
      "|---|---|",
      `| ${method.toUpperCase()} + pixel MLP | ${fmt(r.mdmHeads.mIoU)} |`,
    );
    if (r.supervisedUNet) lines.push(`| supervised UNet | ${pct(r.supervisedUNet.mIoU)} |`);
  }
  lines.push(
    "",
    `Timings: heads ${trainSeconds.toFixed(1)} s (${(trainSeconds / a.heads).toFixed(1)} s each, epochs ${
      headReports.map((r) => r.epochs).join(", ")
    }), ` +
      `test ${testSeconds.toFixed(1)} s; peak memory ${
        peakMiB.toFixed(0)
      } MiB; libtorch ${torchVersion()}, ${getNumThreads()} threads.`,
    "",
    `Overlays (image | ground truth | head 0${baseline ? " | supervised UNet" : ""}): \`${a.out}/overlays/\`.`,
  );
  await Deno.writeTextFile(`${a.out}/report.md`, lines.join("\n") + "\n");
  console.log(lines.join("\n"));
  return 0;
}

if (import.meta.main) await runCli("segment.ts", main);
