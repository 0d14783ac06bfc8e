// The medical few-shot protocol (the paper's Section 4.2 and Appendix A.2): pixel-MLP heads trained
// on features of random crops recomputed every step, early stopping, independent heads;
// sliding-window evaluation that computes each window's features once for all heads.
import { noGrad } from "../autograd.ts";
import { randperm, tensor } from "../create.ts";
import type { Image } from "../data/image.ts";
import { Rng } from "../data/rng.ts";
import type { Device } from "../device.ts";
import { crossEntropy, interpolate } from "../functional.ts";
import { Adam } from "../optim.ts";
import { Generator, manualSeed } from "../random.ts";
import { tidy } from "../scope.ts";
import type { FloatTensor, Tensor } from "../tensor.ts";
import type { UNet } from "../models/unet/unet.ts";
import { PixelClassifier } from "./classifier.ts";
import {
  decoderFeatures,
  decoderPixelFeatures,
  featureChannels,
  type FeatureOptions,
  type PixelFeatures,
} from "./features.ts";
import { Plateau } from "./plateau.ts";
import { type SlidingOptions, slidingWindow } from "./sliding.ts";

/** An image with its per-pixel class labels (255 = ignore) and, where known, its instances. */
export interface Labelled {
  /** Identifies the image in reports and error messages (e.g. its file name). */
  name: string;
  /** The RGB image (3 channels). */
  image: Image;
  /** One class id per pixel, width × height row-major; 255 marks pixels no loss or metric counts. */
  label: Uint8Array;
  /** Instance ids per pixel, row-major (0 background, each instance its own id), for instance AJI. */
  instances?: Int32Array;
}

/** How `trainHead` trains one pixel head (the medical protocol's settings, Appendix A.2). */
export interface HeadTrainingOptions {
  /** Number of classes K; labels are 0..K-1 or 255 (ignored). */
  classes: number;
  /** Side of the square training crops in pixels (also the evaluation window). */
  crop: number;
  /** Crops per step (all their pixels form one batch). */
  batch: number;
  /** Adam's learning rate. */
  lr: number;
  /** Early stopping: train at least minEpochs, stop once the epoch loss has not improved for `patience` epochs. */
  minEpochs: number;
  /** Most epochs; an epoch is ceil(images / batch) steps. */
  maxEpochs: number;
  /** Epochs without a lower epoch loss after which training stops (once past `minEpochs`). */
  patience: number;
  /** Base seed: head h uses seed·1009 + h for its weights, crops and masks. */
  seed: number;
  /** The decoder features the head reads (the mask generator is the head's own, seeded). */
  features: Omit<FeatureOptions, "generator">;
  /** Where the UNet, the head and the crops live. */
  device: Device;
}

/** How one head's training went. */
export interface HeadReport {
  /** Epochs trained (early stopping may end before `maxEpochs`). */
  epochs: number;
  /** Optimizer steps taken. */
  steps: number;
  /** Mean cross-entropy of the last epoch (NaN if none ran). */
  finalLoss: number;
  /** Wall time of the training in seconds (heads trained together: from the start to the head's last epoch). */
  seconds: number;
}

/**
 * Dihedral transform `k` (0..7) of a `size`² crop as an affine map from output pixel (x, y) to the
 * source pixel (ox + xx·x + xy·y, oy + yx·x + yy·y): numpy's rot90(fliplr(a) if k & 4 else a, k & 3),
 * i.e. a left-right mirror when k & 4, then k & 3 counter-clockwise quarter turns (one turn:
 * out[y][x] = in[x][size-1-y]).
 */
export function dihedralMap(
  k: number,
  size: number,
): { ox: number; xx: number; xy: number; oy: number; yx: number; yy: number } {
  if (!(Number.isInteger(k) && k >= 0 && k < 8)) throw new RangeError(`dihedralMap: k must be 0..7, got ${k}`);
  const n = size - 1;
  // The quarter turns give the mirrored image's pixel; the mirror then reflects its column.
  const turns = [
    { ox: 0, xx: 1, xy: 0, oy: 0, yx: 0, yy: 1 },
    { ox: n, xx: 0, xy: -1, oy: 0, yx: 1, yy: 0 },
    { ox: n, xx: -1, xy: 0, oy: n, yx: 0, yy: -1 },
    { ox: 0, xx: 0, xy: 1, oy: n, yx: -1, yy: 0 },
  ];
  const t = turns[k & 3];
  return k & 4 ? { ...t, ox: n - t.ox, xx: -t.xx, xy: -t.xy } : t;
}

/** One crop to cut: an image, the crop's top-left corner and its dihedral transform (`dihedralMap`, 0 = none). */
export interface CropSpec {
  example: Labelled;
  x0: number;
  y0: number;
  transform: number;
}

/** The crops [B, 3, S, S] in [-1, 1] and their labels [B·S·S] (int64) that `specs` describe. */
export function cropTensors(
  specs: readonly CropSpec[],
  crop: number,
  device: Device,
): { images: FloatTensor; labels: Tensor<"int64", Device> } {
  const plane = crop * crop;
  const px = new Float32Array(specs.length * 3 * plane);
  const lab = new BigInt64Array(specs.length * plane);
  specs.forEach(({ example: { image, label, name }, x0, y0, transform }, b) => {
    if (x0 < 0 || y0 < 0 || x0 + crop > image.width || y0 + crop > image.height) {
      throw new RangeError(
        `${name}: a ${crop}² crop at (${x0}, ${y0}) leaves the ${image.width}×${image.height} image`,
      );
    }
    const t = dihedralMap(transform, crop);
    for (let y = 0; y < crop; y++) {
      for (let x = 0; x < crop; x++) {
        const sx = t.ox + t.xx * x + t.xy * y, sy = t.oy + t.yx * x + t.yy * y;
        const src = (y0 + sy) * image.width + x0 + sx, dst = y * crop + x;
        for (let c = 0; c < 3; c++) px[(b * 3 + c) * plane + dst] = image.data[src * 3 + c] / 127.5 - 1;
        lab[b * plane + dst] = BigInt(label[src]);
      }
    }
  });
  return {
    images: tensor(px, { shape: [specs.length, 3, crop, crop], device }),
    labels: tensor(lab, { device }),
  };
}

/**
 * `batch` crops [B, 3, S, S] in [-1, 1] (S = `crop`) and their labels [B·S·S] int64, on `device`,
 * each from a random image of `data` at a random position drawn from `rng`.
 * With `augment`, each crop (and its label) is also turned by a random multiple of 90° and mirrored
 * with probability 1/2 (the 8 symmetries of the square, equally likely), as a user adds to a
 * supervised training; without it the stream of crops is the same as before the option existed.
 * @throws RangeError when a drawn image is smaller than the crop.
 */
export function sampleCrops(
  data: readonly Labelled[],
  rng: Rng,
  batch: number,
  crop: number,
  device: Device,
  opts: { augment?: boolean } = {},
): { images: FloatTensor; labels: Tensor<"int64", Device> } {
  const specs: CropSpec[] = [];
  for (let b = 0; b < batch; b++) {
    const example = data[rng.int(data.length)], { image, name } = example;
    if (image.width < crop || image.height < crop) {
      throw new RangeError(`${name}: image is ${image.width}×${image.height}, smaller than the ${crop}×${crop} crop`);
    }
    const x0 = rng.int(image.width - crop + 1), y0 = rng.int(image.height - crop + 1);
    specs.push({ example, x0, y0, transform: opts.augment ? rng.int(8) : 0 });
  }
  return cropTensors(specs, crop, device);
}

/** An RGB image as a [1, 3, H, W] tensor in [-1, 1], as the UNet was trained on. */
export function imageTensor(image: Image, device: Device): FloatTensor {
  const plane = image.width * image.height;
  const px = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) px[c * plane + p] = image.data[p * 3 + c] / 127.5 - 1;
  return tensor(px, { shape: [1, 3, image.height, image.width], device });
}

/** [B, D, H, W] -> [B·H·W, D]: one row per pixel. */
function pixels(f: FloatTensor): FloatTensor {
  return f.permute(0, 2, 3, 1).reshape(-1, f.size(1));
}

/**
 * Recomputes the heads' batch-norm statistics with the final weights: the exact average over a few
 * batches of training crops. The medical protocol takes few, large steps (all of a crop's pixels
 * at once), too few for momentum-0.1 running statistics to forget their initial variance of 1
 * (after 60 steps 0.9⁶⁰ ≈ 0.002 of it remains, far above the variance of L2-normalised features),
 * and evaluation would then see differently scaled activations than training did.
 */
function recalibrate(
  model: UNet,
  classifier: PixelClassifier,
  data: readonly Labelled[],
  training: HeadTrainingOptions,
  rng: Rng,
  masks: Generator,
  batches: number,
): void {
  const saved = classifier.bn.map((b) => b.momentum);
  classifier.bn.forEach((b) => {
    b.resetRunningStats();
    b.momentum = null;
  });
  classifier.train();
  noGrad(() => {
    for (let i = 0; i < Math.max(batches, 4); i++) {
      tidy(() => {
        const { images } = sampleCrops(data, rng, training.batch, training.crop, training.device);
        classifier.forward(pixels(decoderFeatures(model, images, { ...training.features, generator: masks })));
      });
    }
  });
  classifier.bn.forEach((b, i) => b.momentum = saved[i]);
}

/** Trains one head; `head` selects its seed, so heads are independent and reproducible. */
export function trainHead(
  model: UNet,
  data: readonly Labelled[],
  training: HeadTrainingOptions,
  head: number,
  onEpoch?: (epoch: number, loss: number) => void,
): { classifier: PixelClassifier; report: HeadReport } {
  const t0 = performance.now();
  const d = featureChannels(model, training.features);
  const seed = training.seed * 1009 + head;
  const rng = new Rng(seed);
  using masks = new Generator(seed, training.device);
  // The initial weights come from the global generator: seed it, so that a head is reproducible.
  manualSeed(seed);
  const classifier = new PixelClassifier(d, training.classes, { device: training.device });
  using opt = new Adam(classifier.parameters(), { lr: training.lr });
  const stepsPerEpoch = Math.max(1, Math.ceil(data.length / training.batch));
  let best = Infinity, bestEpoch = 0, epoch = 0, steps = 0, loss = NaN;
  model.eval();
  classifier.train();
  for (epoch = 1; epoch <= training.maxEpochs; epoch++) {
    let sum = 0;
    for (let s = 0; s < stepsPerEpoch; s++) {
      sum += tidy(() => {
        const { images, labels } = sampleCrops(data, rng, training.batch, training.crop, training.device);
        const feats = decoderFeatures(model, images, { ...training.features, generator: masks });
        opt.zeroGrad();
        const l = crossEntropy(classifier.forward(pixels(feats)), labels, { ignoreIndex: 255 });
        l.backward();
        opt.step();
        return l.item();
      });
      steps++;
    }
    loss = sum / stepsPerEpoch;
    onEpoch?.(epoch, loss);
    if (loss < best) [best, bestEpoch] = [loss, epoch];
    if (epoch >= training.minEpochs && epoch - bestEpoch >= training.patience) break;
  }
  recalibrate(model, classifier, data, training, rng, masks, stepsPerEpoch);
  classifier.eval();
  return {
    classifier,
    report: {
      epochs: Math.min(epoch, training.maxEpochs),
      steps,
      finalLoss: loss,
      seconds: (performance.now() - t0) / 1000,
    },
  };
}

/**
 * Per-head class maps of one image. The features of each window are computed once and shared by
 * every head; with MDM the mask generator is reseeded per image, so results do not depend on the
 * order in which images are evaluated.
 */
export function predictHeads(
  model: UNet,
  heads: readonly PixelClassifier[],
  image: Image,
  prediction: { features: Omit<FeatureOptions, "generator">; device: Device; seed: number; sliding: SlidingOptions },
): Uint8Array[] {
  return predictHeadsWith(decoderPixelFeatures(model, prediction.features), heads, image, prediction);
}

/** Where and how `predictHeadsWith` predicts. */
export interface HeadPrediction {
  device: Device;
  /** Seeds the generator the features draw from (MDM's masks), afresh for every image. */
  seed: number;
  sliding: SlidingOptions;
  /**
   * Size [width, height] of the returned maps when it differs from the image's: the blended logits
   * are resized bilinearly (align_corners false) before the argmax, e.g. to score predictions made
   * on a 2× downscaled image against full-resolution ground truth.
   */
  outputSize?: [number, number];
}

/**
 * Per-head class maps of one image from any feature source, each window's features computed once
 * for all heads (see `predictHeads`).
 */
export function predictHeadsWith(
  source: PixelFeatures,
  heads: readonly PixelClassifier[],
  image: Image,
  prediction: HeadPrediction,
): Uint8Array[] {
  return noGrad(() =>
    tidy(() => {
      const x = imageTensor(image, prediction.device);
      using masks = new Generator(prediction.seed, prediction.device);
      const logits = slidingWindow(x, (win) => {
        const f = source.extract(win, masks);
        const [n, , h, w] = f.shape;
        const rows = pixels(f);
        return heads.map((hd) => hd.forward(rows).reshape(n, h, w, -1).permute(0, 3, 1, 2));
      }, prediction.sliding);
      return logits.map((l) => classMap(l, prediction.outputSize));
    })
  );
}

/**
 * The argmax class map of logits [1, K, H, W], optionally after a bilinear resize of the logits
 * to `size` [width, height].
 */
export function classMap(logits: FloatTensor, size?: [number, number]): Uint8Array {
  return tidy(() => {
    const [, , h, w] = logits.shape;
    const resized = size && (size[0] !== w || size[1] !== h)
      ? interpolate(logits.float(), { size: [size[1], size[0]], mode: "bilinear", alignCorners: false })
      : logits;
    return Uint8Array.from(resized.argmax(1).reshape(-1).toArray() as BigInt64Array, Number);
  });
}

/**
 * How `trainHeadGroup` trains its heads: `trainHead`'s settings (the medical protocol's, Appendix
 * A.2) without the feature options, which the `PixelFeatures` source holds.
 */
export interface HeadGroupOptions extends Omit<HeadTrainingOptions, "features" | "seed"> {
  /** Heads trained together on the same crops. */
  heads: number;
  /** Seed of the crops and masks; head h's initial weights use seed·1009 + h. */
  seed: number;
  /**
   * Steps in an epoch. Default ceil(images / batch): one pass of a data loader that yields one
   * random crop per labelled image, as the authors' loader does (1 step for 3 images, 2 for 30).
   */
  stepsPerEpoch?: number;
  /**
   * Share of each step's pixels the heads train on, drawn at random per step (default 1: all, as
   * the paper). Neighbouring pixels carry nearly the same information, so a quarter keeps the
   * crops' variety at a quarter of the heads' cost, which is what a CPU can afford.
   */
  pixelFraction?: number;
  /** Stops every head once training has taken this long (a guard for time-boxed runs). */
  timeLimitSeconds?: number;
}

/** What `trainHeadGroup` returns. */
export interface HeadGroupResult {
  classifiers: PixelClassifier[];
  reports: HeadReport[];
  stepsPerEpoch: number;
  /** Whether the time limit stopped training. */
  timedOut: boolean;
  seconds: number;
}

/**
 * Trains `opts.heads` pixel classifiers together: every step draws one batch of random crops,
 * computes its features once and updates every head still training on them (each head has its own
 * seeded initial weights, Adam state and early stopping). The paper trains its heads one by one,
 * each on its own crops; sharing the crops and features makes the heads' spread smaller than
 * theirs, and costs one feature pass per step instead of one per head.
 * Batch-norm statistics are then recomputed exactly (see `recalibrate`).
 * @throws RangeError for a crop larger than an image, or a pixelFraction outside (0, 1].
 */
export function trainHeadGroup(
  source: PixelFeatures,
  data: readonly Labelled[],
  opts: HeadGroupOptions,
  onEpoch?: (epoch: number, losses: (number | null)[]) => void,
): HeadGroupResult {
  const t0 = performance.now();
  const fraction = opts.pixelFraction ?? 1;
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`pixelFraction must be in (0, 1], got ${fraction}`);
  const stepsPerEpoch = opts.stepsPerEpoch ?? Math.max(1, Math.ceil(data.length / opts.batch));
  const rng = new Rng(opts.seed * 1009 + 7);
  using masks = new Generator(opts.seed * 1009 + 8, opts.device);
  using picks = new Generator(opts.seed * 1009 + 9, opts.device);
  const heads = Array.from({ length: opts.heads }, (_, h) => {
    // Initial weights from the global generator, seeded per head as trainHead seeds it.
    manualSeed(opts.seed * 1009 + h);
    const classifier = new PixelClassifier(source.channels, opts.classes, { device: opts.device });
    classifier.train();
    return {
      classifier,
      optimizer: new Adam(classifier.parameters(), { lr: opts.lr }),
      plateau: new Plateau({ patience: opts.patience, minChecks: opts.minEpochs }),
      active: true,
      report: { epochs: 0, steps: 0, finalLoss: NaN, seconds: 0 } as HeadReport,
    };
  });
  let timedOut = false;
  try {
    for (let epoch = 1; epoch <= opts.maxEpochs && heads.some((h) => h.active) && !timedOut; epoch++) {
      const sums = heads.map(() => 0);
      for (let s = 0; s < stepsPerEpoch; s++) {
        tidy(() => {
          const { images, labels } = sampleCrops(data, rng, opts.batch, opts.crop, opts.device);
          let rows = pixels(source.extract(images, masks)), target = labels;
          if (fraction < 1) {
            const n = target.size(0);
            const keep = randperm(n, { device: opts.device, generator: picks }).narrow(0, 0, Math.ceil(fraction * n));
            rows = rows.indexSelect(0, keep);
            target = target.indexSelect(0, keep);
          }
          heads.forEach((h, i) => {
            if (!h.active) return;
            h.optimizer.zeroGrad();
            const l = crossEntropy(h.classifier.forward(rows), target, { ignoreIndex: 255 });
            l.backward();
            h.optimizer.step();
            sums[i] += l.item();
            h.report.steps++;
          });
        });
      }
      const losses = heads.map((h, i) => {
        if (!h.active) return null;
        const loss = sums[i] / stepsPerEpoch;
        h.report.epochs = epoch;
        h.report.finalLoss = loss;
        h.plateau.update(loss);
        if (h.plateau.stop) h.active = false;
        h.report.seconds = (performance.now() - t0) / 1000;
        return loss;
      });
      onEpoch?.(epoch, losses);
      if (opts.timeLimitSeconds !== undefined && (performance.now() - t0) / 1000 > opts.timeLimitSeconds) {
        timedOut = true;
      }
    }
    const classifiers = heads.map((h) => h.classifier);
    recalibrateGroup(source, classifiers, data, opts, rng, masks, stepsPerEpoch);
    classifiers.forEach((c) => c.eval());
    return {
      classifiers,
      reports: heads.map((h) => h.report),
      stepsPerEpoch,
      timedOut,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    for (const h of heads) h.optimizer[Symbol.dispose]();
  }
}

/** `recalibrate` for heads trained together: every head sees the same batches of crops. */
function recalibrateGroup(
  source: PixelFeatures,
  classifiers: readonly PixelClassifier[],
  data: readonly Labelled[],
  opts: HeadGroupOptions,
  rng: Rng,
  masks: Generator,
  batches: number,
): void {
  const bns = classifiers.flatMap((c) => c.bn);
  const saved = bns.map((b) => b.momentum);
  bns.forEach((b) => {
    b.resetRunningStats();
    b.momentum = null;
  });
  classifiers.forEach((c) => c.train());
  noGrad(() => {
    for (let i = 0; i < Math.max(batches, 4); i++) {
      tidy(() => {
        const { images } = sampleCrops(data, rng, opts.batch, opts.crop, opts.device);
        const rows = pixels(source.extract(images, masks));
        for (const c of classifiers) c.forward(rows);
      });
    }
  });
  bns.forEach((b, i) => b.momentum = saved[i]);
}
