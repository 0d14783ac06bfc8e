// guided-diffusion's AttentionBlock: GN, a 1×1 qkv conv, multi-head self-attention over the
// spatial positions with the softmax in float32, a zero-initialised 1×1 projection, residual add.
import type { Device } from "../../device.ts";
import type { FloatDType } from "../../dtype.ts";
import { tidy } from "../../scope.ts";
import type { Tensor } from "../../tensor.ts";
import type { VarBuilder } from "../../nn/builder.ts";
import { Conv1d, GroupNorm } from "../../nn/layers.ts";
import { Module } from "../../nn/module.ts";

type T = Tensor<FloatDType, Device>;

export interface AttentionOptions {
  numHeads?: number;
  /** Channels per head; when not -1 it sets the head count. */
  numHeadChannels?: number;
  /** Split qkv before the heads (QKVAttention) instead of after (QKVAttentionLegacy). */
  useNewAttentionOrder?: boolean;
}

export class AttentionBlock extends Module {
  readonly numHeads: number;
  readonly norm: GroupNorm;
  readonly qkv: Conv1d;
  readonly projOut: Conv1d;
  readonly newOrder: boolean;

  constructor(vb: VarBuilder, readonly channels: number, o: AttentionOptions = {}) {
    super(vb);
    const headChannels = o.numHeadChannels ?? -1;
    if (headChannels !== -1 && channels % headChannels !== 0) {
      throw new RangeError(
        `AttentionBlock ${vb.prefix}: ${channels} channels are not divisible by ${headChannels} channels per head`,
      );
    }
    this.numHeads = headChannels === -1 ? (o.numHeads ?? 1) : channels / headChannels;
    if (channels % this.numHeads !== 0) {
      throw new RangeError(
        `AttentionBlock ${vb.prefix}: ${channels} channels do not split into ${this.numHeads} heads`,
      );
    }
    this.newOrder = o.useNewAttentionOrder ?? false;
    this.norm = new GroupNorm(vb.pp("norm"), channels);
    this.qkv = new Conv1d(vb.pp("qkv"), channels, 3 * channels, 1);
    this.projOut = new Conv1d(vb.pp("proj_out"), channels, channels, 1, { zeroInit: true });
  }

  // [N, C, H, W] -> [N, C, H, W]
  forward(x: T): T {
    return tidy(() => {
      const [b, c, ...spatial] = x.shape;
      const flat = x.reshape(b, c, -1); // [N, C, L]
      const length = flat.size(2);
      const qkv = this.qkv.forward(this.norm.forward(flat)); // [N, 3C, L]
      const heads = this.numHeads, ch = c / heads;
      let q: T, k: T, v: T;
      if (this.newOrder) {
        [q, k, v] = qkv.chunk(3, 1).map((t) => t.reshape(b * heads, ch, length));
      } else {
        [q, k, v] = qkv.reshape(b * heads, 3 * ch, length).split(ch, 1);
      }
      // Scaling q and k by ch^-1/4 each (not the product by ch^-1/2) is what keeps float16 in range.
      const scale = 1 / Math.sqrt(Math.sqrt(ch));
      // guided-diffusion's einsum("bct,bcs->bts", q, k) and einsum("bts,bcs->bct", w, v), as the
      // bmm calls einsum makes (same operands and layouts: bit-identical), through mdm's bmm, which
      // spreads the batch over the threads where libtorch's CPU bmm runs it serially.
      const weight = q.mul(scale).transpose(1, 2).bmm(k.mul(scale)); // [N·heads, L, L]
      const attn = weight.softmax(-1, "float32").to(weight.dtype);
      const a = attn.bmm(v.transpose(1, 2)).transpose(1, 2).reshape(b, c, length); // [N, C, L]
      const out = flat.add(this.projOut.forward(a)).reshape(b, c, ...spatial);
      // Flattening made the activations row-major; keep the surrounding convolutions' layout.
      return x.isMemoryFormat("channelsLast") && !x.isMemoryFormat("contiguous")
        ? out.toMemoryFormat("channelsLast")
        : out;
    });
  }
}
