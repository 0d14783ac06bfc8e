// guided-diffusion's ResBlock: GN-SiLU-conv, timestep embedding (scale-shift or additive),
// GN-SiLU-dropout-conv (zero-initialised), skip connection; optionally up- or down-sampling.
import type { Device } from "../../device.ts";
import type { FloatDType } from "../../dtype.ts";
import * as F from "../../functional.ts";
import { tidy } from "../../scope.ts";
import type { Tensor } from "../../tensor.ts";
import type { VarBuilder } from "../../nn/builder.ts";
import { Conv2d, Downsample, GroupNorm, Linear, Upsample } from "../../nn/layers.ts";
import { Module } from "../../nn/module.ts";

type Activations = Tensor<FloatDType, Device>;

export interface ResBlockOptions {
  outChannels?: number;
  dropout?: number;
  useScaleShiftNorm?: boolean;
  /** A 3×3 conv instead of a 1×1 conv on the skip path when channels change. */
  useConvSkip?: boolean;
  up?: boolean;
  down?: boolean;
}

export class ResBlock extends Module {
  readonly outChannels: number;
  readonly inNorm: GroupNorm;
  readonly inConv: Conv2d;
  readonly embLinear: Linear;
  readonly outNorm: GroupNorm;
  readonly outConv: Conv2d;
  readonly skip: Conv2d | null;
  readonly resample: { h: Upsample | Downsample; x: Upsample | Downsample } | null;
  readonly dropout: number;
  readonly scaleShift: boolean;

  constructor(vb: VarBuilder, readonly channels: number, embChannels: number, block: ResBlockOptions = {}) {
    super(vb);
    const out = this.outChannels = block.outChannels ?? channels;
    this.dropout = block.dropout ?? 0;
    this.scaleShift = block.useScaleShiftNorm ?? false;
    // Keys follow the nn.Sequential indices: in_layers = [GN, SiLU, conv], emb_layers = [SiLU,
    // linear], out_layers = [GN, SiLU, Dropout, conv].
    this.inNorm = new GroupNorm(vb.pp("in_layers").pp(0), channels);
    this.inConv = new Conv2d(vb.pp("in_layers").pp(2), channels, out, 3, { padding: 1 });
    this.resample = block.up
      ? { h: new Upsample(vb.pp("h_upd"), channels, false), x: new Upsample(vb.pp("x_upd"), channels, false) }
      : block.down
      ? { h: new Downsample(vb.pp("h_upd"), channels, false), x: new Downsample(vb.pp("x_upd"), channels, false) }
      : null;
    this.embLinear = new Linear(vb.pp("emb_layers").pp(1), embChannels, this.scaleShift ? 2 * out : out);
    this.outNorm = new GroupNorm(vb.pp("out_layers").pp(0), out);
    this.outConv = new Conv2d(vb.pp("out_layers").pp(3), out, out, 3, { padding: 1, zeroInit: true });
    this.skip = out === channels
      ? null
      : block.useConvSkip
      ? new Conv2d(vb.pp("skip_connection"), channels, out, 3, { padding: 1 })
      : new Conv2d(vb.pp("skip_connection"), channels, out, 1);
  }

  // x [N, C, H, W], emb [N, E] (float32) -> [N, C_out, H', W'] with H' = 2H (up), H/2 (down) or H
  forward(x: Activations, emb: Activations): Activations {
    return tidy(() => {
      let h = this.inNorm.forward(x).silu();
      let skipIn = x;
      if (this.resample) {
        h = this.resample.h.forward(h);
        skipIn = this.resample.x.forward(x);
      }
      h = this.inConv.forward(h);
      // [N, E] -> [N, 2·C_out, 1, 1] in the activations' dtype
      const e = this.embLinear.forward(emb.silu()).to(h.dtype).unsqueeze(-1).unsqueeze(-1);
      if (this.scaleShift) {
        const [scale, shift] = e.chunk(2, 1);
        h = this.outNorm.forward(h).mul(scale.add(1)).add(shift);
      } else {
        h = this.outNorm.forward(h.add(e));
      }
      h = F.dropout(h.silu(), this.dropout, this.training && this.dropout > 0);
      h = this.outConv.forward(h);
      return (this.skip ? this.skip.forward(skipIn) : skipIn).add(h);
    });
  }
}
