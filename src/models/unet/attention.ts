// guided-diffusion's AttentionBlock: GN, a 1×1 qkv conv, multi-head self-attention over the
// spatial positions with the softmax in float32, a zero-initialised 1×1 projection, residual add.
import * as F from "../../functional.ts";
import { tidy } from "../../scope.ts";
import type { FloatTensor as Activations } from "../../tensor.ts";
import type { VarBuilder } from "../../nn/builder.ts";
import { Conv1d, GroupNorm } from "../../nn/layers.ts";
import { Module } from "../../nn/module.ts";

/** Head layout of an `AttentionBlock`. */
export interface AttentionOptions {
  /** Attention heads when numHeadChannels is -1 (1). */
  numHeads?: number;
  /** Channels per head; when not -1 it sets the head count. */
  numHeadChannels?: number;
  /** Split qkv before the heads (QKVAttention) instead of after (QKVAttentionLegacy). */
  useNewAttentionOrder?: boolean;
}

/**
 * guided-diffusion's AttentionBlock: GroupNorm, a 1×1 qkv convolution, multi-head self-attention
 * over all spatial positions, a zero-initialised 1×1 projection, and a residual connection.
 */
export class AttentionBlock extends Module {
  /** The number of heads. */
  readonly numHeads: number;
  /** The input norm (key `norm`). */
  readonly norm: GroupNorm;
  /** The 1×1 convolution making q, k and v (key `qkv`). */
  readonly qkv: Conv1d;
  /** The zero-initialised output projection (key `proj_out`). */
  readonly projOut: Conv1d;
  /** Whether q, k, v are split before the heads (useNewAttentionOrder). */
  readonly newOrder: boolean;

  /**
   * Self-attention over `channels` channels under `vb`.
   * @throws RangeError when `channels` does not split into the heads.
   */
  constructor(vb: VarBuilder, readonly channels: number, attention: AttentionOptions = {}) {
    super(vb);
    const headChannels = attention.numHeadChannels ?? -1;
    if (headChannels !== -1 && channels % headChannels !== 0) {
      throw new RangeError(
        `AttentionBlock ${vb.prefix}: ${channels} channels are not divisible by ${headChannels} channels per head`,
      );
    }
    this.numHeads = headChannels === -1 ? (attention.numHeads ?? 1) : channels / headChannels;
    if (channels % this.numHeads !== 0) {
      throw new RangeError(
        `AttentionBlock ${vb.prefix}: ${channels} channels do not split into ${this.numHeads} heads`,
      );
    }
    this.newOrder = attention.useNewAttentionOrder ?? false;
    this.norm = new GroupNorm(vb.pp("norm"), channels);
    this.qkv = new Conv1d(vb.pp("qkv"), channels, 3 * channels, 1);
    this.projOut = new Conv1d(vb.pp("proj_out"), channels, channels, 1, { zeroInit: true });
  }

  // [N, C, H, W] -> [N, C, H, W]
  /** Applies attention to x [N, C, H, W] -> [N, C, H, W] (the same dtype and memory layout). */
  forward(x: Activations): Activations {
    return x.isMemoryFormat("channelsLast") && !x.isMemoryFormat("contiguous")
      ? this.positionsFirst(x)
      : this.channelsFirst(x);
  }

  /**
   * softmax(qᵀk / √ch) vᵀ per head, as guided-diffusion's einsums compute it (with q and k each
   * scaled by ch^-1/4), in libtorch's fused attention kernel.
   */
  private attend(q: Activations, k: Activations, v: Activations): Activations {
    return F.scaledDotProductAttention(q, k, v, { scale: 1 / Math.sqrt(this.channels / this.numHeads) });
  }

  /** guided-diffusion's own order of operations, copy-free on row-major activations. */
  private channelsFirst(x: Activations): Activations {
    return tidy(() => {
      const [b, c, ...spatial] = x.shape;
      const flat = x.reshape(b, c, -1); // [N, C, L]
      const length = flat.size(2);
      const qkv = this.qkv.forward(this.norm.forward(flat)); // [N, 3C, L]
      const heads = this.numHeads, ch = c / heads;
      let q: Activations, k: Activations, v: Activations;
      if (this.newOrder) {
        [q, k, v] = qkv.chunk(3, 1).map((t) => t.reshape(b * heads, ch, length));
      } else {
        [q, k, v] = qkv.reshape(b * heads, 3 * ch, length).split(ch, 1);
      }
      const a = this.attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)) // [N·heads, L, ch]
        .transpose(1, 2).reshape(b, c, length); // [N, C, L]
      return flat.add(this.projOut.forward(a)).reshape(b, c, ...spatial);
    });
  }

  /**
   * Positions first: the 1×1 convolutions on the channels-last map, whose [N, L, C] views give q, k, v
   * with contiguous channels, as the flash kernel takes them, and take its output back without a copy.
   */
  private positionsFirst(x: Activations): Activations {
    return tidy(() => {
      const [b, c, ...spatial] = x.shape;
      const heads = this.numHeads, ch = c / heads;
      const qkv = this.qkv.forward2d(this.norm.forward(x)); // [N, 3C, H, W] channels-last
      const length = qkv.size(2) * qkv.size(3);
      const rows = qkv.reshape(b, 3 * c, length).transpose(1, 2); // [N, L, 3C]
      // The legacy order splits each head's 3·ch channels into q, k, v; the new one splits q, k, v first.
      const parts = this.newOrder ? rows.reshape(b, length, 3, heads, ch) : rows.reshape(b, length, heads, 3, ch);
      const [q, k, v] = [0, 1, 2].map((i) => parts.select(this.newOrder ? 2 : 3, i).transpose(1, 2)); // [N, heads, L, ch]
      // The kernel's output is [N, heads, L, ch] over [N, L, heads, ch] memory: as [N, C, H, W], a
      // channels-last view.
      const a = this.attend(q, k, v).permute(0, 1, 3, 2).reshape(b, c, ...spatial);
      return x.add(this.projOut.forward2d(a));
    });
  }
}
