// The faces protocol of ddpm-segmentation (the paper's Appendix A.2): features of every training pixel held in
// memory, heads trained on shuffled batches of 64 pixels with early stopping by iterations, and a
// majority vote of the heads at test time (whole images, no windows).
import { noGrad } from "../autograd.ts";
import { randperm, tensor } from "../create.ts";
import type { SegSplit } from "../data/datasets/dataset.ts";
import type { Image } from "../data/image.ts";
import type { Device } from "../device.ts";
import { cat, crossEntropy, stack } from "../functional.ts";
import { Adam } from "../optim.ts";
import { Generator, manualSeed } from "../random.ts";
import { keep, tidy } from "../scope.ts";
import type { FloatTensor, Tensor } from "../tensor.ts";
import type { UNet } from "../models/unet/unet.ts";
import { PixelClassifier } from "./classifier.ts";
import { decoderFeatures, type FeatureOptions } from "./features.ts";
import { imageTensor, type Labelled } from "./heads.ts";
import { MeanIoU, type MeanStd, meanStd } from "./metrics.ts";

/** The faces protocol's settings (ddpm-segmentation's, values in parentheses). */
export interface FacesOptions {
  /** Number of classes K; labels are 0..K-1 or 255 (ignored). */
  classes: number;
  /** Pixels per step (64). */
  batch: number;
  /** Adam's learning rate. */
  lr: number;
  /** Most passes over the pixels. */
  maxEpochs: number;
  /** Early stopping starts after this epoch (3) ... */
  checkAfterEpoch: number;
  /** ... and stops once the step loss has not improved for this many steps (50). */
  patience: number;
  /** Classes with fewer pixels than this in an image are ignored there (20). */
  minClassPixels: number;
  /** Storage dtype of the in-memory pixel features: float16 halves the memory. */
  storage: "float32" | "float16";
  /** The decoder features of every pixel (computed once per image, whole images). */
  features: FeatureOptions;
  /** Where the UNet, the pixels and the heads live. */
  device: Device;
}

/** Labels with the classes too small in this image set to 255 (ignored), as ddpm-segmentation does. */
export function dropSmallClasses(label: Uint8Array, classes: number, minPixels: number): Uint8Array {
  const counts = new Int32Array(256);
  for (const v of label) counts[v]++;
  return label.map((v) => (v !== 255 && v < classes && counts[v] > 0 && counts[v] < minPixels ? 255 : v));
}

/**
 * Every labelled pixel's features `x` [N, D] (in the storage dtype) and class `y` [N] int64, over
 * the images of `data` in order; pixels labelled 255, or of a class too small in their image, are left out.
 */
export function collectPixels(
  model: UNet,
  data: readonly Labelled[],
  protocol: FacesOptions,
): { x: FloatTensor; y: Tensor<"int64", Device> } {
  return noGrad(() =>
    tidy(() => {
      const xs: FloatTensor[] = [], ys: Tensor<"int64", Device>[] = [];
      for (const ex of data) {
        tidy(() => {
          const f = decoderFeatures(model, imageTensor(ex.image, protocol.device), protocol.features); // [1, D, H, W]
          const rows = f.permute(0, 2, 3, 1).reshape(-1, f.size(1));
          const label = dropSmallClasses(ex.label, protocol.classes, protocol.minClassPixels);
          const keepIdx = Int32Array.from(label.keys()).filter((p) => label[p] !== 255);
          const idx = tensor(keepIdx, { device: protocol.device });
          xs.push(keep(rows.indexSelect(0, idx).to(protocol.storage)));
          ys.push(keep(tensor(BigInt64Array.from(keepIdx, (p) => BigInt(label[p])), { device: protocol.device })));
        });
      }
      const x = cat(xs, 0), y = cat(ys, 0);
      [...xs, ...ys].forEach((t) => t.dispose());
      return { x, y };
    })
  );
}

/**
 * Trains one head on the in-memory pixels `x` [N, D] and classes `y` [N] (from `collectPixels`);
 * `seed` fixes its initialisation and batch order. Returns the head in eval mode, the epochs
 * started and the steps taken.
 * @throws RangeError when there are fewer pixels than one batch.
 */
export function trainFacesHead(
  x: FloatTensor,
  y: Tensor<"int64", Device>,
  protocol: FacesOptions,
  seed: number,
): { classifier: PixelClassifier; epochs: number; steps: number } {
  using g = new Generator(seed, protocol.device);
  manualSeed(seed); // reproducible initial weights
  const classifier = new PixelClassifier(x.size(1), protocol.classes, { device: protocol.device });
  using opt = new Adam(classifier.parameters(), { lr: protocol.lr });
  const n = x.size(0), perEpoch = Math.floor(n / protocol.batch); // drop_last, as the reference's loader
  if (perEpoch === 0) {
    throw new RangeError(`faces protocol: ${n} labelled pixels, fewer than one batch of ${protocol.batch}`);
  }
  let best = Infinity, sinceBest = 0, steps = 0, epoch = 0, stop = false;
  classifier.train();
  for (epoch = 0; epoch < protocol.maxEpochs && !stop; epoch++) {
    using order = randperm(n, { device: protocol.device, generator: g });
    for (let b = 0; b < perEpoch && !stop; b++) {
      const loss = tidy(() => {
        const idx = order.narrow(0, b * protocol.batch, protocol.batch);
        opt.zeroGrad();
        const l = crossEntropy(classifier.forward(x.indexSelect(0, idx).float()), y.indexSelect(0, idx));
        l.backward();
        opt.step();
        return l.item();
      });
      steps++;
      if (epoch > protocol.checkAfterEpoch) {
        if (loss < best) [best, sinceBest] = [loss, 0];
        else if (++sinceBest > protocol.patience) stop = true;
      }
    }
  }
  classifier.eval();
  return { classifier, epochs: epoch, steps };
}

/** The heads' majority vote for one image (ties go to the lower class, as torch.mode's). */
export function predictFaces(
  model: UNet,
  heads: readonly PixelClassifier[],
  image: Image,
  protocol: FacesOptions,
): Uint8Array {
  return noGrad(() =>
    tidy(() => {
      const f = decoderFeatures(model, imageTensor(image, protocol.device), protocol.features);
      const rows = f.permute(0, 2, 3, 1).reshape(-1, f.size(1));
      const votes = stack(heads.map((h) => h.forward(rows).argmax(1)), 0); // [heads, P]
      const counts = votes.oneHot(protocol.classes).sum(0); // [P, K]
      return Uint8Array.from(counts.argmax(1).toArray() as BigInt64Array, Number);
    })
  );
}

/** What the faces protocol measured: mIoU mean ± std over the seeds, and each seed's. */
export interface FacesResult {
  /** Names of the labelled training images. */
  labelledImages: string[];
  /** Labelled pixels held in memory. */
  pixels: number;
  /** Feature channels D of each pixel. */
  channels: number;
  /** Number of test images scored. */
  testImages: number;
  /** The seeds run, in order. */
  seeds: number[];
  /** Dataset-level mIoU of the heads' vote, mean ± std over the seeds, and each seed's in `perSeed`. */
  mIoU: MeanStd & { perSeed: number[] };
  /** Wall time from collecting the pixels to the last vote. */
  seconds: number;
}

/**
 * ddpm-segmentation's protocol end to end: collects the pixels of `train`, then per seed trains 10
 * heads (seeded `seed·100 + h`) and scores their majority vote on `test` by mIoU.
 */
export async function runFacesProtocol(
  model: UNet,
  train: readonly Labelled[],
  test: SegSplit,
  opts: FacesOptions,
  seeds: readonly number[],
): Promise<FacesResult> {
  const t0 = performance.now();
  const { x, y } = collectPixels(model, train, opts);
  using _x = x, _y = y;
  console.error(`faces protocol: ${x.size(0)} labelled pixels × ${x.size(1)} features in memory`);
  const mious: number[] = [];
  const testImages = await test.loadAll();
  for (const seed of seeds) {
    const heads = Array.from({ length: 10 }, (_, h) => trainFacesHead(x, y, opts, seed * 100 + h).classifier);
    const acc = new MeanIoU(opts.classes);
    for (const ex of testImages) acc.update(predictFaces(model, heads, ex.image, opts), ex.label);
    mious.push(acc.mean());
    heads.forEach((h) => h.parameters().forEach((p) => p.dispose()));
  }
  return {
    labelledImages: train.map((ex) => ex.name),
    pixels: x.size(0),
    channels: x.size(1),
    testImages: testImages.length,
    seeds: [...seeds],
    mIoU: { ...meanStd(mious), perSeed: mious },
    seconds: (performance.now() - t0) / 1000,
  };
}
