// guided-diffusion's ResBlock: GN-SiLU-conv, timestep embedding (scale-shift or additive),
// GN-SiLU-dropout-conv (zero-initialised), skip connection; optionally up- or down-sampling.
import * as F from "../../functional.ts";
import { tidy } from "../../scope.ts";
import type { FloatTensor as Activations } from "../../tensor.ts";
import type { VarBuilder } from "../../nn/builder.ts";
import { Conv2d, Downsample, GroupNorm, Linear, Upsample } from "../../nn/layers.ts";
import { Module } from "../../nn/module.ts";

/** Shape and conditioning of a `ResBlock`. */
export interface ResBlockOptions {
  /** Output channels (the input's). */
  outChannels?: number;
  /** Dropout rate before the second convolution (0). */
  dropout?: number;
  /** Condition by scale and shift of the second norm instead of addition (false). */
  useScaleShiftNorm?: boolean;
  /** A 3×3 conv instead of a 1×1 conv on the skip path when channels change. */
  useConvSkip?: boolean;
  /** Upsample ×2 inside the block (false). */
  up?: boolean;
  /** Downsample ×2 inside the block (false). */
  down?: boolean;
}

/**
 * guided-diffusion's ResBlock: GroupNorm-SiLU-conv, the timestep embedding added (or applied as
 * scale and shift), GroupNorm-SiLU-dropout-conv (zero-initialised), and a skip connection;
 * optionally up- or down-sampling both paths.
 */
export class ResBlock extends Module {
  /** Output channels. */
  readonly outChannels: number;
  /** The first norm (in_layers.0). */
  readonly inNorm: GroupNorm;
  /** The first 3×3 convolution (in_layers.2). */
  readonly inConv: Conv2d;
  /** The embedding projection (emb_layers.1): to C_out, or 2·C_out with scale-shift. */
  readonly embLinear: Linear;
  /** The second norm (out_layers.0). */
  readonly outNorm: GroupNorm;
  /** The second, zero-initialised 3×3 convolution (out_layers.3). */
  readonly outConv: Conv2d;
  /** The skip path's convolution when the channels change (skip_connection), else null. */
  readonly skip: Conv2d | null;
  /** The up- or down-sampling layers of the residual (h) and skip (x) paths, or null. */
  readonly resample: { h: Upsample | Downsample; x: Upsample | Downsample } | null;
  /** The dropout rate. */
  readonly dropout: number;
  /** Whether the embedding scales and shifts the second norm. */
  readonly scaleShift: boolean;

  /** A block from `channels` to `block.outChannels` channels, conditioned on embeddings of `embChannels`. */
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
  /**
   * Applies the block to x [N, C, H, W] with the timestep embedding emb [N, E] -> [N, C_out, H', W'],
   * H' = 2H (up), H/2 (down) or H.
   */
  forward(x: Activations, emb: Activations): Activations {
    return tidy(() => {
      // GroupNorm and SiLU (with the timestep's scale-shift between them below) in one fused kernel.
      let h = this.inNorm.forwardSilu(x);
      let skipIn = x;
      if (this.resample) {
        h = this.resample.h.forward(h);
        skipIn = this.resample.x.forward(x);
      }
      h = this.inConv.forward(h);
      const e = this.embLinear.forward(emb.silu()); // [N, E] -> [N, 2·C_out] (scale, shift) or [N, C_out]
      if (this.scaleShift) {
        const [scale, shift] = e.chunk(2, 1);
        h = this.outNorm.forwardSilu(h, scale, shift);
      } else {
        h = this.outNorm.forwardSilu(h.add(e.to(h.dtype).unsqueeze(-1).unsqueeze(-1)));
      }
      h = F.dropout(h, this.dropout, this.training && this.dropout > 0);
      h = this.outConv.forward(h);
      return (this.skip ? this.skip.forward(skipIn) : skipIn).add(h);
    });
  }
}
