// The per-pixel MLP head of ddpm-segmentation and MDM (ddpm-segmentation's pixel_classifier).
import type { Device } from "../device.ts";
import { tidy } from "../scope.ts";
import type { FloatTensor } from "../tensor.ts";
import { normal, zerosInit } from "../nn/init.ts";
import { BatchNorm1d, Linear } from "../nn/layers.ts";
import { Module, rootBuilder } from "../nn/module.ts";

/**
 * Linear(D, h1), ReLU, BatchNorm1d, Linear(h1, h2), ReLU, BatchNorm1d, Linear(h2, K), with
 * (h1, h2) = (128, 32), or (256, 128) for 30 classes or more. Linear weights start N(0, 0.02),
 * biases 0. Keys as in the reference's nn.Sequential: layers.0, layers.2, ...
 */
export class PixelClassifier extends Module {
  /** The three linear layers, input to output (keys layers.0, layers.3, layers.6). */
  readonly fc: [Linear, Linear, Linear];
  /** The batch norms after the first two linear layers (keys layers.2, layers.5). */
  readonly bn: [BatchNorm1d, BatchNorm1d];

  /**
   * A fresh head for `inFeatures` feature channels D and `classes` classes K, its weights drawn
   * from the global generator, on `opts.device` (the default device when omitted).
   */
  constructor(readonly inFeatures: number, readonly classes: number, opts: { device?: Device } = {}) {
    const vb = rootBuilder({ device: opts.device });
    super(vb);
    const [h1, h2] = classes >= 30 ? [256, 128] : [128, 32];
    const seq = vb.pp("layers");
    const init = { weightInit: normal(0.02), biasInit: zerosInit };
    this.fc = [
      new Linear(seq.pp(0), inFeatures, h1, init),
      new Linear(seq.pp(3), h1, h2, init),
      new Linear(seq.pp(6), h2, classes, init),
    ];
    this.bn = [new BatchNorm1d(seq.pp(2), h1), new BatchNorm1d(seq.pp(5), h2)];
  }

  /** Class logits [N, K] of pixel features [N, D] (one row per pixel). */
  forward(x: FloatTensor): FloatTensor {
    return tidy(() => {
      const h = this.bn[0].forward(this.fc[0].forward(x).relu());
      return this.fc[2].forward(this.bn[1].forward(this.fc[1].forward(h).relu()));
    });
  }
}
