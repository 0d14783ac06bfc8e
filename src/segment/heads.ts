// The medical few-shot protocol (the paper's Section 4.2 and Appendix A.2): pixel-MLP heads trained
// on features of random crops recomputed every step, early stopping, independent heads;
// sliding-window evaluation that computes each window's features once for all heads.
import { noGrad } from "../autograd.ts";
import { tensor } from "../create.ts";
import type { Image } from "../data/image.ts";
import { Rng } from "../data/rng.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import { crossEntropy } from "../functional.ts";
import { Adam } from "../optim.ts";
import { Generator, manualSeed } from "../random.ts";
import { tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import type { UNet } from "../models/unet/unet.ts";
import { PixelClassifier } from "./classifier.ts";
import { decoderFeatures, featureChannels, type FeatureOptions } from "./features.ts";
import { type SlidingOptions, slidingWindow } from "./sliding.ts";

type FloatTensor = Tensor<FloatDType, Device>;

/** An image with its per-pixel class labels (255 = ignore) and, where known, its instances. */
export interface Labelled {
  name: string;
  image: Image;
  label: Uint8Array;
  instances?: Int32Array;
}

export interface HeadTrainingOptions {
  classes: number;
  crop: number;
  /** Crops per step (all their pixels form one batch). */
  batch: number;
  lr: number;
  /** Early stopping: train at least minEpochs, stop once the epoch loss has not improved for `patience` epochs. */
  minEpochs: number;
  maxEpochs: number;
  patience: number;
  seed: number;
  features: Omit<FeatureOptions, "generator">;
  device: Device;
}

export interface HeadReport {
  epochs: number;
  steps: number;
  finalLoss: number;
  seconds: number;
}

/** Crops [B, 3, S, S] in [-1, 1] and their labels [B·S·S] from a seeded stream of random crops. */
export function sampleCrops(
  data: readonly Labelled[],
  rng: Rng,
  batch: number,
  crop: number,
  device: Device,
): { images: FloatTensor; labels: Tensor<"int64", Device> } {
  const plane = crop * crop;
  const px = new Float32Array(batch * 3 * plane);
  const lab = new BigInt64Array(batch * plane);
  for (let b = 0; b < batch; b++) {
    const { image, label, name } = data[rng.int(data.length)];
    if (image.width < crop || image.height < crop) {
      throw new RangeError(`${name}: image is ${image.width}×${image.height}, smaller than the ${crop}×${crop} crop`);
    }
    const x0 = rng.int(image.width - crop + 1), y0 = rng.int(image.height - crop + 1);
    for (let y = 0; y < crop; y++) {
      for (let x = 0; x < crop; x++) {
        const src = (y0 + y) * image.width + x0 + x, dst = y * crop + x;
        for (let c = 0; c < 3; c++) px[(b * 3 + c) * plane + dst] = image.data[src * 3 + c] / 127.5 - 1;
        lab[b * plane + dst] = BigInt(label[src]);
      }
    }
  }
  return {
    images: tensor(px, { shape: [batch, 3, crop, crop], device }),
    labels: tensor(lab, { device }),
  };
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
  return noGrad(() =>
    tidy(() => {
      const x = imageTensor(image, prediction.device);
      using masks = new Generator(prediction.seed, prediction.device);
      const logits = slidingWindow(x, (win) => {
        const f = decoderFeatures(model, win, { ...prediction.features, generator: masks });
        const [n, , h, w] = f.shape;
        const rows = pixels(f);
        return heads.map((hd) => hd.forward(rows).reshape(n, h, w, -1).permute(0, 3, 1, 2));
      }, prediction.sliding);
      return logits.map((l) => Uint8Array.from(l.argmax(1).reshape(-1).toArray() as BigInt64Array, Number));
    })
  );
}
