// The paper's medical few-shot protocol from start to end: independent pixel-MLP heads trained on
// the labelled images, optionally the supervised UNet from scratch beside them, both evaluated
// with sliding windows on the test split; scored per image (binary: Dice, IoU, both AJIs; more
// classes: mIoU) and summarised as mean ± std over the heads.
import type { SegSplit } from "../data/datasets/dataset.ts";
import type { UNetConfig } from "../models/unet/config.ts";
import type { UNet } from "../models/unet/unet.ts";
import { Progress } from "../report/progress.ts";
import { type BaselineEarlyStopping, predictBaseline, trainBaseline } from "./baseline.ts";
import { type HeadReport, type HeadTrainingOptions, type Labelled, predictHeads, trainHead } from "./heads.ts";
import {
  ajiBinary,
  ajiInstance,
  connectedComponents,
  dice,
  glasIoUFromDice,
  iou,
  MeanIoU,
  type MeanStd,
  meanStd,
} from "./metrics.ts";

/** How `runMedicalProtocol` trains, predicts and scores. */
export interface MedicalProtocolOptions {
  /** Independently trained heads (seeded 0..heads-1 on top of `head.seed`). */
  heads: number;
  /** How each head trains, on which features, and the crop and seed the evaluation reuses. */
  head: HeadTrainingOptions;
  /** The supervised UNet from scratch on the same labels, or null to skip it. */
  baseline: SupervisedOptions | null;
  /** Sliding-window overlap (0..0.95); windows are crop-sized. */
  overlap: number;
  /**
   * Called for each test image in order with the heads' predictions and the supervised UNet's
   * (null without it), e.g. to draw overlays; awaited before the next image.
   */
  onTestImage?: (
    index: number,
    example: Labelled,
    headPredictions: Uint8Array[],
    baselinePrediction: Uint8Array | null,
  ) => Promise<void> | void;
}

/** The supervised UNet from scratch that the protocol trains beside the heads (see `trainBaseline`). */
export interface SupervisedOptions {
  /** The UNet's architecture; its image size, output channels and learnSigma are set from the task. */
  unet: Partial<UNetConfig> & { imageSize: number };
  /** Cross-entropy alone, or plus the soft Dice loss over the foreground classes. */
  loss: "ce" | "dice+ce";
  /** AdamW's learning rate (no weight decay). */
  lr: number;
  /**
   * Training steps (default: the heads' mean number of steps); the most steps with `earlyStopping`,
   * which a comparison with the heads should use (trained to convergence, not to the heads' budget).
   */
  steps?: number;
  /** Random flips and 90° turns of the labelled crops. */
  augment?: boolean;
  /** Stop once the monitored loss stops falling; without it, train exactly `steps` steps. */
  earlyStopping?: BaselineEarlyStopping;
}

/** One method's scores on a binary task, each mean ± std over its runs (null when not defined). */
export interface BinarySummary {
  /** Foreground Dice, averaged over the test images. */
  dice: MeanStd | null;
  /** Foreground IoU, averaged over the test images. */
  iouPerImage: MeanStd | null;
  /** IoU derived from each run's mean Dice as D / (2 − D) (`glasIoUFromDice`), as GlaS results report it. */
  glasIoUFromDice: MeanStd | null;
  /** The authors' AJI on binary masks (equal to the foreground IoU; `ajiBinary`). */
  ajiBinaryAuthors: MeanStd | null;
  /** The MoNuSeg challenge's instance AJI (`ajiInstance`); null unless every test image has instances. */
  ajiInstanceChallenge: MeanStd | null;
}

/** Scores of a binary task (two classes), with the trivial all-background/all-foreground Dice. */
export interface BinaryResults {
  /** The pixel heads, mean ± std over the heads. */
  mdmHeads: BinarySummary;
  /** The supervised UNet (one run, so its std is NaN), or null when not trained. */
  supervisedUNet: BinarySummary | null;
  /** Mean Dice of predicting background everywhere. */
  trivialAllBackground: { dice: number };
  /** Mean Dice of predicting foreground everywhere. */
  trivialAllForeground: { dice: number };
}

/** Scores of a task with more than two classes: mIoU over the test split. */
export interface MulticlassResults {
  /** Each head's dataset-level mIoU (`MeanIoU`), mean ± std over the heads. */
  mdmHeads: { mIoU: MeanStd };
  /** The supervised UNet's dataset-level mIoU, or null when not trained. */
  supervisedUNet: { mIoU: number } | null;
}

/** What a `MedicalResult` reports whatever the number of classes. */
export interface MedicalRunRecord {
  /** Names of the labelled training images. */
  labelledImages: string[];
  /** Number of test images scored. */
  testImages: number;
  /** Each head's training report, in head order. */
  heads: HeadReport[];
  /** The supervised UNet's steps and training time, when trained. */
  supervised: { steps: number; seconds: number } | null;
  /** Wall times in seconds: training all heads, and predicting and scoring the test split. */
  timings: { headTrainingSeconds: number; testSeconds: number };
}

/**
 * What `runMedicalProtocol` returns: the common report and, when the task has two classes
 * (`binary: true`), the binary scores; otherwise the mIoU.
 */
export type MedicalResult =
  & MedicalRunRecord
  & ({ binary: true; results: BinaryResults } | { binary: false; results: MulticlassResults });

/** One prediction's scores on one image (fractions in [0, 1]); ajiInstance null without instances. */
export interface ImageScores {
  dice: number;
  iou: number;
  ajiBinary: number;
  ajiInstance: number | null;
}

/**
 * Binary scores of a class map against a labelled image (label > 0 is foreground, 255 background):
 * Dice, IoU, the authors' binary AJI and, where the image has instances, the challenge's instance
 * AJI with the prediction's 4-connected components as its instances.
 */
export function binaryScores(pred: Uint8Array, ex: Labelled): ImageScores {
  const target = Uint8Array.from(ex.label, (v) => (v === 255 ? 0 : v > 0 ? 1 : 0));
  const p = Uint8Array.from(pred, (v) => (v > 0 ? 1 : 0));
  let ajiI: number | null = null;
  if (ex.instances) ajiI = ajiInstance(connectedComponents(p, ex.image.width, ex.image.height, 4).labels, ex.instances);
  return { dice: dice(p, target), iou: iou(p, target), ajiBinary: ajiBinary(p, target), ajiInstance: ajiI };
}

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);

/** Per-image scores of each run → each metric's mean ± std over the runs (of the runs' per-image means). */
export function summarize(scores: ImageScores[][]): BinarySummary {
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
}

/**
 * Runs the medical protocol with `model`'s decoder features: trains `opts.heads` heads (and the
 * supervised UNet) on `train`, predicts every image of `test` with sliding windows and scores it.
 * Progress goes to stderr. Binary scores when `opts.head.classes` is 2, mIoU otherwise.
 */
export async function runMedicalProtocol(
  model: UNet,
  train: readonly Labelled[],
  test: SegSplit,
  opts: MedicalProtocolOptions,
): Promise<MedicalResult> {
  const headOpts = opts.head, device = headOpts.device;
  const progress = new Progress({ total: opts.heads, label: "heads", every: 1 });
  const heads = [], headReports: HeadReport[] = [];
  const tTrain = performance.now();
  for (let h = 0; h < opts.heads; h++) {
    const { classifier, report } = trainHead(model, train, headOpts, h);
    heads.push(classifier);
    headReports.push(report);
    progress.update(h + 1, { epochs: report.epochs, loss: report.finalLoss });
  }
  const headTrainingSeconds = (performance.now() - tTrain) / 1000;

  let baseline = null;
  if (opts.baseline) {
    const steps = opts.baseline.steps ??
      Math.round(headReports.reduce((s, r) => s + r.steps, 0) / headReports.length);
    console.error(
      `supervised UNet from scratch: ${
        opts.baseline.earlyStopping ? "at most " : ""
      }${steps} steps of ${headOpts.batch} crops`,
    );
    baseline = {
      ...trainBaseline(train, {
        unet: opts.baseline.unet,
        classes: headOpts.classes,
        crop: headOpts.crop,
        batch: headOpts.batch,
        steps,
        lr: opts.baseline.lr,
        loss: opts.baseline.loss,
        seed: headOpts.seed,
        device,
        augment: opts.baseline.augment,
        earlyStopping: opts.baseline.earlyStopping,
      }),
    };
  }

  const sliding = { window: headOpts.crop, overlap: opts.overlap };
  const binary = headOpts.classes === 2;
  const perHead: ImageScores[][] = heads.map(() => []);
  const perHeadIoU = heads.map(() => new MeanIoU(headOpts.classes));
  const baseScores: ImageScores[] = [];
  const baseIoU = new MeanIoU(headOpts.classes);
  const trivial = { background: [] as number[], foreground: [] as number[] };
  const testProgress = new Progress({ total: test.length, label: "test", every: 1 });
  const tTest = performance.now();
  let i = 0;
  for await (const ex of test) {
    const preds = predictHeads(model, heads, ex.image, {
      features: headOpts.features,
      device,
      seed: headOpts.seed,
      sliding,
    });
    const base = baseline ? predictBaseline(baseline.model, ex.image, { device, sliding }) : null;
    preds.forEach((p, h) => binary ? perHead[h].push(binaryScores(p, ex)) : perHeadIoU[h].update(p, ex.label));
    if (base) binary ? baseScores.push(binaryScores(base, ex)) : baseIoU.update(base, ex.label);
    if (binary) {
      const n = ex.label.length;
      trivial.background.push(binaryScores(new Uint8Array(n), ex).dice);
      trivial.foreground.push(binaryScores(new Uint8Array(n).fill(1), ex).dice);
    }
    await opts.onTestImage?.(i, ex, preds, base);
    testProgress.update(++i);
  }
  const testSeconds = (performance.now() - tTest) / 1000;

  const common: MedicalRunRecord = {
    labelledImages: train.map((x) => x.name),
    testImages: test.length,
    heads: headReports,
    supervised: baseline ? { steps: baseline.steps, seconds: baseline.seconds } : null,
    timings: { headTrainingSeconds, testSeconds },
  };
  if (binary) {
    return {
      ...common,
      binary,
      results: {
        mdmHeads: summarize(perHead),
        supervisedUNet: baseline ? summarize([baseScores]) : null,
        trivialAllBackground: { dice: mean(trivial.background) },
        trivialAllForeground: { dice: mean(trivial.foreground) },
      },
    };
  }
  return {
    ...common,
    binary,
    results: {
      mdmHeads: { mIoU: meanStd(perHeadIoU.map((m) => m.mean())) },
      supervisedUNet: baseline ? { mIoU: baseIoU.mean() } : null,
    },
  };
}
