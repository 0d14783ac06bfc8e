// The supervised row of the paper's Table 1: the same UNet trained from scratch on the labelled
// crops alone (fixed t = 0, K output channels), with cross-entropy (optionally + Dice) and the
// budget the heads had, evaluated with the same sliding window.
import { noGrad } from "../autograd.ts";
import { full } from "../create.ts";
import { Rng } from "../data/rng.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import { crossEntropy } from "../functional.ts";
import { AdamW } from "../optim.ts";
import { manualSeed } from "../random.ts";
import { tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import type { UNetConfig } from "../models/unet/config.ts";
import { UNet } from "../models/unet/unet.ts";
import { rootBuilder } from "../nn/module.ts";
import { imageTensor, type Labelled, sampleCrops } from "./heads.ts";
import { type SlidingOptions, slidingWindow } from "./sliding.ts";
import type { Image } from "../data/image.ts";

type FloatTensor = Tensor<FloatDType, Device>;

export interface BaselineOptions {
  unet: Partial<UNetConfig> & { imageSize: number };
  classes: number;
  crop: number;
  batch: number;
  steps: number;
  lr: number;
  loss: "ce" | "dice+ce";
  seed: number;
  device: Device;
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

export function trainBaseline(
  data: readonly Labelled[],
  training: BaselineOptions,
): { model: UNet; seconds: number; finalLoss: number } {
  const t0 = performance.now();
  manualSeed(training.seed * 7919 + 3); // reproducible initial weights
  const model = new UNet(
    { ...training.unet, imageSize: training.crop, outChannels: training.classes, learnSigma: false },
    rootBuilder({ device: training.device }),
  );
  using opt = new AdamW(model.parameters(), { lr: training.lr, weightDecay: 0 });
  const rng = new Rng(training.seed * 7919 + 17);
  let loss = NaN;
  model.train();
  for (let s = 0; s < training.steps; s++) {
    loss = tidy(() => {
      const { images, labels } = sampleCrops(data, rng, training.batch, training.crop, training.device);
      const t = full([training.batch], 0, { dtype: "int64", device: training.device });
      const logits = model.forward(images, t).output!;
      opt.zeroGrad();
      let l = crossEntropy(logits.permute(0, 2, 3, 1).reshape(-1, training.classes), labels, { ignoreIndex: 255 });
      if (training.loss === "dice+ce") l = l.add(diceLoss(logits, labels));
      l.backward();
      opt.step();
      return l.item();
    });
  }
  model.eval();
  return { model, seconds: (performance.now() - t0) / 1000, finalLoss: loss };
}

export function predictBaseline(
  model: UNet,
  image: Image,
  prediction: { device: Device; sliding: SlidingOptions },
): Uint8Array {
  return noGrad(() =>
    tidy(() => {
      const x = imageTensor(image, prediction.device);
      const [logits] = slidingWindow(x, (win) => {
        const t = full([win.size(0)], 0, { dtype: "int64", device: prediction.device });
        return [model.forward(win, t).output!];
      }, prediction.sliding);
      return Uint8Array.from(logits.argmax(1).reshape(-1).toArray() as BigInt64Array, Number);
    })
  );
}
