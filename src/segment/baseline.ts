// The supervised row of the paper's Table 1: the same UNet trained from scratch on the labelled
// crops alone (fixed t = 0, K output channels), with cross-entropy (optionally + Dice), evaluated
// with the same sliding window. By default it trains a fixed number of steps; with
// `earlyStopping` and `augment` it trains as a user would train it for real: random flips and
// quarter turns, until the monitored loss stops falling.
import { noGrad } from "../autograd.ts";
import { full } from "../create.ts";
import { Rng } from "../data/rng.ts";
import type { Device } from "../device.ts";
import { crossEntropy } from "../functional.ts";
import { AdamW } from "../optim.ts";
import { manualSeed } from "../random.ts";
import { keep, tidy } from "../scope.ts";
import type { FloatTensor, Tensor } from "../tensor.ts";
import type { UNetConfig } from "../models/unet/config.ts";
import { UNet } from "../models/unet/unet.ts";
import { rootBuilder } from "../nn/module.ts";
import { classMap, type CropSpec, cropTensors, imageTensor, type Labelled, sampleCrops } from "./heads.ts";
import { Plateau } from "./plateau.ts";
import { type SlidingOptions, slidingWindow, windowStarts } from "./sliding.ts";
import type { Image } from "../data/image.ts";

/** When the supervised UNet stops before `steps`. */
export interface BaselineEarlyStopping {
  /** What is watched: the mean training loss of the last `every` steps, or the loss on held-out rows. */
  monitor: "train-loss" | "held-out";
  /** Steps between checks. */
  every: number;
  /** Checks without a new best after which training stops. */
  patience: number;
  /** Steps before stopping is allowed (default 0). */
  minSteps?: number;
  /**
   * held-out: the bottom share of every labelled image's rows (default 0.2, at least one crop
   * high) is kept out of training; its loss, over crops tiling it, is the monitored value, and the
   * weights of the best check are the ones returned.
   */
  heldOutFraction?: number;
}

/** How `trainBaseline` trains the supervised UNet from scratch. */
export interface BaselineOptions {
  /** The UNet's architecture; imageSize is replaced by `crop`, outChannels by `classes`, learnSigma by false. */
  unet: Partial<UNetConfig> & { imageSize: number };
  /** Number of classes K (the UNet's output channels); labels are 0..K-1 or 255 (ignored). */
  classes: number;
  /** Side of the square training crops in pixels. */
  crop: number;
  /** Crops per step. */
  batch: number;
  /** Training steps: exactly this many without early stopping, at most this many with it. */
  steps: number;
  /** AdamW's learning rate (no weight decay). */
  lr: number;
  /** Cross-entropy alone, or plus the soft Dice loss over the foreground classes. */
  loss: "ce" | "dice+ce";
  /** Seeds the initial weights and the crop stream. */
  seed: number;
  /** Where the UNet and the crops live. */
  device: Device;
  /** Random flips and 90° turns of every crop with its label (default false). */
  augment?: boolean;
  /** Stop once the monitored loss stops falling; without it, train exactly `steps` steps. */
  earlyStopping?: BaselineEarlyStopping;
  /** Stops after this many seconds of training, whatever else says (a guard for time-boxed runs). */
  timeLimitSeconds?: number;
}

/** One check of the monitored loss. */
export interface BaselineCheck {
  /** Steps taken when the check was made. */
  step: number;
  /** Mean training loss since the previous check. */
  trainLoss: number;
  /** Mean loss over the held-out crops, with held-out monitoring only. */
  heldOutLoss?: number;
}

/** What `trainBaseline` returns. */
export interface BaselineResult {
  /** The trained UNet, in eval mode, with the weights of `bestStep`. */
  model: UNet;
  /** Wall time of the training, seconds. */
  seconds: number;
  /** The last step's training loss. */
  finalLoss: number;
  /** Steps taken. */
  steps: number;
  /** Why training ended. */
  stoppedBy: "steps" | "plateau" | "time";
  /** The step whose weights are returned (the best check with held-out monitoring, else the last). */
  bestStep: number;
  /** Every check of the monitored loss, in order (empty without early stopping). */
  history: BaselineCheck[];
}

/** Soft Dice loss over the foreground classes, from logits [B, K, H, W] and labels [B·H·W]. */
function diceLoss(logits: FloatTensor, labels: Tensor<"int64", Device>): FloatTensor {
  return tidy(() => {
    const [b, k, h, w] = logits.shape;
    const valid = labels.ne(255).reshape(b, 1, h, w);
    const target = labels.maskedFill(labels.eq(255), 0).reshape(b, h, w).oneHot(k).permute(0, 3, 1, 2).float();
    const p = logits.softmax(1).mul(valid.float()), t = target.mul(valid.float());
    const inter = p.mul(t).sum([0, 2, 3]), denom = p.sum([0, 2, 3]).add(t.sum([0, 2, 3]));
    const dice = inter.mul(2).add(1).div(denom.add(1)); // [K]
    return dice.narrow(0, 1, k - 1).mean().rsub(1);
  });
}

/** The rows [from, to) of a labelled image, as an image of its own. */
function rowsOf(ex: Labelled, from: number, to: number, suffix: string): Labelled {
  const w = ex.image.width;
  return {
    name: `${ex.name}${suffix}`,
    image: { ...ex.image, height: to - from, data: ex.image.data.slice(from * w * 3, to * w * 3) },
    label: ex.label.slice(from * w, to * w),
    instances: ex.instances?.slice(from * w, to * w),
  };
}

/**
 * Splits every labelled image into its top rows (for training) and its bottom `fraction` of rows
 * (held out), the held-out part at least `crop` rows high.
 * @throws RangeError when an image is too small to leave a crop on both sides.
 */
export function holdOutRows(
  data: readonly Labelled[],
  fraction: number,
  crop: number,
): { train: Labelled[]; heldOut: Labelled[] } {
  if (!(fraction > 0 && fraction < 1)) throw new RangeError(`held-out fraction must be in (0, 1), got ${fraction}`);
  const train: Labelled[] = [], heldOut: Labelled[] = [];
  for (const ex of data) {
    const h = ex.image.height, held = Math.max(crop, Math.round(fraction * h));
    if (h - held < crop || ex.image.width < crop) {
      throw new RangeError(
        `${ex.name}: ${ex.image.width}×${h} is too small to hold out ${held} rows and keep a ${crop}² crop for training`,
      );
    }
    train.push(rowsOf(ex, 0, h - held, ":train"));
    heldOut.push(rowsOf(ex, h - held, h, ":held-out"));
  }
  return { train, heldOut };
}

/** Crops tiling the held-out images (windows flush with the far edges), as [N, 3, S, S] and labels [N·S·S]. */
function tilingCrops(
  data: readonly Labelled[],
  crop: number,
  device: Device,
): { images: FloatTensor; labels: Tensor<"int64", Device> } {
  const specs: CropSpec[] = [];
  for (const example of data) {
    for (const y0 of windowStarts(example.image.height, crop, crop)) {
      for (const x0 of windowStarts(example.image.width, crop, crop)) specs.push({ example, x0, y0, transform: 0 });
    }
  }
  return cropTensors(specs, crop, device);
}

/**
 * Trains the UNet from scratch on `data`. With `earlyStopping`, checks the monitored loss every
 * `every` steps and stops once it has not improved for `patience` checks (or at `steps`).
 * @throws RangeError when held-out monitoring cannot split an image (see `holdOutRows`).
 */
export function trainBaseline(data: readonly Labelled[], training: BaselineOptions): BaselineResult {
  const t0 = performance.now();
  const stopping = training.earlyStopping;
  const split = stopping?.monitor === "held-out"
    ? holdOutRows(data, stopping.heldOutFraction ?? 0.2, training.crop)
    : { train: [...data], heldOut: [] };
  manualSeed(training.seed * 7919 + 3); // reproducible initial weights
  const model = new UNet(
    { ...training.unet, imageSize: training.crop, outChannels: training.classes, learnSigma: false },
    rootBuilder({ device: training.device }),
  );
  using opt = new AdamW(model.parameters(), { lr: training.lr, weightDecay: 0 });
  const rng = new Rng(training.seed * 7919 + 17);
  const lossOf = (logits: FloatTensor, labels: Tensor<"int64", Device>) => {
    let l = crossEntropy(logits.permute(0, 2, 3, 1).reshape(-1, training.classes), labels, { ignoreIndex: 255 });
    if (training.loss === "dice+ce") l = l.add(diceLoss(logits, labels));
    return l;
  };
  const heldOut = split.heldOut.length ? tilingCrops(split.heldOut, training.crop, training.device) : null;
  const plateau = stopping
    ? new Plateau({ patience: stopping.patience, minChecks: Math.ceil((stopping.minSteps ?? 0) / stopping.every) })
    : null;
  let best: Map<string, Tensor> | null = null;
  const history: BaselineCheck[] = [];
  let loss = NaN, step = 0, bestStep = 0, windowSum = 0, windowSteps = 0;
  let stoppedBy: BaselineResult["stoppedBy"] = "steps";
  try {
    model.train();
    while (step < training.steps) {
      loss = tidy(() => {
        const { images, labels } = sampleCrops(split.train, rng, training.batch, training.crop, training.device, {
          augment: training.augment,
        });
        const t = full([training.batch], 0, { dtype: "int64", device: training.device });
        opt.zeroGrad();
        const l = lossOf(model.forward(images, t).output!, labels);
        l.backward();
        opt.step();
        return l.item();
      });
      step++;
      windowSum += loss;
      windowSteps++;
      if (stopping && plateau && step % stopping.every === 0) {
        const check: BaselineCheck = { step, trainLoss: windowSum / windowSteps };
        windowSum = windowSteps = 0;
        if (heldOut) check.heldOutLoss = heldOutLoss(model, heldOut, training.batch, lossOf);
        history.push(check);
        if (plateau.update(check.heldOutLoss ?? check.trainLoss)) {
          bestStep = step;
          if (heldOut) {
            best?.forEach((t) => t.dispose());
            best = new Map([...model.stateDict()].map(([k, v]) => [k, keep(v.detach().clone())]));
          }
        }
        if (plateau.stop) {
          stoppedBy = "plateau";
          break;
        }
      }
      if (training.timeLimitSeconds !== undefined && (performance.now() - t0) / 1000 > training.timeLimitSeconds) {
        stoppedBy = "time";
        break;
      }
    }
    if (best) model.loadStateDict(best);
    else bestStep = step;
  } finally {
    best?.forEach((t) => t.dispose());
    heldOut?.images.dispose();
    heldOut?.labels.dispose();
  }
  model.eval();
  return {
    model,
    seconds: (performance.now() - t0) / 1000,
    finalLoss: loss,
    steps: step,
    stoppedBy,
    bestStep,
    history,
  };
}

/** The mean loss over the held-out crops, in eval mode (dropout off), without gradients. */
function heldOutLoss(
  model: UNet,
  crops: { images: FloatTensor; labels: Tensor<"int64", Device> },
  batch: number,
  lossOf: (logits: FloatTensor, labels: Tensor<"int64", Device>) => FloatTensor,
): number {
  model.eval();
  const n = crops.images.size(0), plane = crops.labels.size(0) / n;
  let sum = 0;
  noGrad(() => {
    for (let at = 0; at < n; at += batch) {
      const m = Math.min(batch, n - at);
      sum += m * tidy(() => {
        const t = full([m], 0, { dtype: "int64", device: crops.images.device });
        const logits = model.forward(crops.images.narrow(0, at, m), t).output!;
        return lossOf(logits, crops.labels.narrow(0, at * plane, m * plane)).item();
      });
    }
  });
  model.train();
  return sum / n;
}

/**
 * The supervised UNet's class map of one image, sliding windows blended as the heads'; with
 * `outputSize` [width, height] the logits are resized bilinearly to it before the argmax.
 */
export function predictBaseline(
  model: UNet,
  image: Image,
  prediction: { device: Device; sliding: SlidingOptions; outputSize?: [number, number] },
): Uint8Array {
  return noGrad(() =>
    tidy(() => {
      const x = imageTensor(image, prediction.device);
      const [logits] = slidingWindow(x, (win) => {
        const t = full([win.size(0)], 0, { dtype: "int64", device: prediction.device });
        return [model.forward(win, t).output!];
      }, prediction.sliding);
      return classMap(logits, prediction.outputSize);
    })
  );
}
