// guided-diffusion's UNetModel: encoder (input_blocks), middle_block, decoder (output_blocks) with
// skip connections, conditioned on the timestep. State-dict keys equal guided-diffusion's.
import type { Device } from "../../device.ts";
import { cat } from "../../functional.ts";
import { tidy } from "../../scope.ts";
import type { FloatTensor as Activations, Tensor } from "../../tensor.ts";
import type { VarBuilder } from "../../nn/builder.ts";
import { Conv2d, Downsample, GroupNorm, Linear, Upsample } from "../../nn/layers.ts";
import { Module, rootBuilder } from "../../nn/module.ts";
import { AttentionBlock } from "./attention.ts";
import { defaultChannelsLast, resolveConfig, type UNetConfig } from "./config.ts";
import { ResBlock } from "./resblock.ts";
import { timestepEmbedding } from "./timestep.ts";

type Layer = ResBlock | AttentionBlock | Conv2d | Upsample | Downsample;

/** guided-diffusion's TimestepEmbedSequential: layers applied in turn, ResBlocks also get emb. */
class EmbedSequential {
  constructor(readonly layers: Layer[]) {}
  forward(x: Activations, emb: Activations): Activations {
    return tidy(() => {
      let h = x;
      for (const l of this.layers) h = l instanceof ResBlock ? l.forward(h, emb) : l.forward(h);
      return h;
    });
  }
}

/** What `UNet.forward` returns besides the output: decoder features for segmentation. */
export interface ForwardOptions {
  /** Indices into output_blocks whose outputs to return, in this order. */
  capture?: readonly number[];
  /**
   * Stop after the last captured decoder block, skipping the rest of the decoder and the output
   * layer (feature extraction needs only the features). `output` is then null.
   */
  stopAfterCapture?: boolean;
}

/** The outputs of `UNet.forward`. */
export interface ForwardResult {
  /** The prediction [N, C_out, H, W] in float32, or null when `stopAfterCapture` skipped it. */
  output: Activations | null;
  /** The captured decoder-block outputs, in the order asked for. */
  features: Activations[];
}

/**
 * guided-diffusion's UNetModel: an encoder (input_blocks), a middle block and a decoder
 * (output_blocks) with skip connections, conditioned on the timestep; ResBlocks with GroupNorm and
 * attention at the configured resolutions. Parameter keys equal guided-diffusion's, so its state
 * dicts load as they are.
 */
export class UNet extends Module {
  /** The configuration, with every default filled in. */
  readonly config: UNetConfig;
  /** The timestep embedding's two linear layers (time_embed.0 and time_embed.2). */
  readonly timeEmbed: [Linear, Linear];
  /**
   * The encoder's blocks (input_blocks).
   * @internal
   */
  readonly inputBlocks: EmbedSequential[] = [];
  /**
   * The middle block (middle_block).
   * @internal
   */
  readonly middleBlock: EmbedSequential;
  /**
   * The decoder's blocks (output_blocks).
   * @internal
   */
  readonly outputBlocks: EmbedSequential[] = [];
  readonly #outputChannels: number[] = [];
  /** The output norm (out.0). */
  readonly outNorm: GroupNorm;
  /** The output convolution (out.2), zero-initialised. */
  readonly outConv: Conv2d;

  /**
   * Builds a freshly initialised UNet, or one under `vb` to nest it in a larger model.
   * @throws RangeError naming the invalid config field (see `resolveConfig`).
   */
  constructor(config: Partial<UNetConfig> & { imageSize: number }, vb: VarBuilder = rootBuilder()) {
    super(vb);
    const c = this.config = resolveConfig({
      ...config,
      channelsLast: config.channelsLast ?? defaultChannelsLast(vb.store.device),
    });
    vb.store.channelsLast = c.channelsLast;
    const mc = c.modelChannels, embDim = 4 * mc;
    const attnDs = new Set(c.attentionResolutions.map((r) => c.imageSize / r));
    const res = (b: VarBuilder, ch: number, out: number, extra: { up?: boolean; down?: boolean } = {}) =>
      new ResBlock(b, ch, embDim, {
        outChannels: out,
        dropout: c.dropout,
        useScaleShiftNorm: c.useScaleShiftNorm,
        ...extra,
      });
    const attn = (b: VarBuilder, ch: number, heads: number) =>
      new AttentionBlock(b, ch, {
        numHeads: heads,
        numHeadChannels: c.numHeadChannels,
        useNewAttentionOrder: c.useNewAttentionOrder,
      });

    this.timeEmbed = [
      new Linear(vb.pp("time_embed").pp(0), mc, embDim),
      new Linear(vb.pp("time_embed").pp(2), embDim, embDim),
    ];

    const inputs = vb.pp("input_blocks");
    let ch = Math.trunc(c.channelMult[0] * mc);
    const inputCh = ch;
    this.inputBlocks.push(new EmbedSequential([new Conv2d(inputs.pp(0).pp(0), c.inChannels, ch, 3, { padding: 1 })]));
    const skipChannels = [ch];
    let ds = 1;
    c.channelMult.forEach((mult, level) => {
      for (let i = 0; i < c.numResBlocks; i++) {
        const b = inputs.pp(this.inputBlocks.length);
        const layers: Layer[] = [res(b.pp(0), ch, Math.trunc(mult * mc))];
        ch = Math.trunc(mult * mc);
        if (attnDs.has(ds)) layers.push(attn(b.pp(1), ch, c.numHeads));
        this.inputBlocks.push(new EmbedSequential(layers));
        skipChannels.push(ch);
      }
      if (level !== c.channelMult.length - 1) {
        const b = inputs.pp(this.inputBlocks.length).pp(0);
        this.inputBlocks.push(
          new EmbedSequential([
            c.resblockUpdown ? res(b, ch, ch, { down: true }) : new Downsample(b, ch, c.convResample),
          ]),
        );
        skipChannels.push(ch);
        ds *= 2;
      }
    });

    const mid = vb.pp("middle_block");
    this.middleBlock = new EmbedSequential([
      res(mid.pp(0), ch, ch),
      attn(mid.pp(1), ch, c.numHeads),
      res(mid.pp(2), ch, ch),
    ]);

    const outputs = vb.pp("output_blocks");
    const upHeads = c.numHeadsUpsample === -1 ? c.numHeads : c.numHeadsUpsample;
    [...c.channelMult.entries()].reverse().forEach(([level, mult]) => {
      for (let i = 0; i <= c.numResBlocks; i++) {
        const b = outputs.pp(this.outputBlocks.length);
        const skip = skipChannels.pop()!;
        const layers: Layer[] = [res(b.pp(0), ch + skip, Math.trunc(mc * mult))];
        ch = Math.trunc(mc * mult);
        if (attnDs.has(ds)) layers.push(attn(b.pp(1), ch, upHeads));
        if (level && i === c.numResBlocks) {
          const u = b.pp(layers.length);
          layers.push(c.resblockUpdown ? res(u, ch, ch, { up: true }) : new Upsample(u, ch, c.convResample));
          ds /= 2;
        }
        this.outputBlocks.push(new EmbedSequential(layers));
        this.#outputChannels.push(ch);
      }
    });

    this.outNorm = new GroupNorm(vb.pp("out").pp(0), ch);
    this.outConv = new Conv2d(vb.pp("out").pp(2), inputCh, c.outChannels, 3, { padding: 1, zeroInit: true });
  }

  /**
   * Channels of decoder block `i`'s output.
   * @throws RangeError when there is no decoder block `i`.
   */
  decoderChannels(i: number): number {
    const c = this.#outputChannels[i];
    if (c === undefined) {
      throw new RangeError(`decoder block ${i} does not exist (0..${this.#outputChannels.length - 1})`);
    }
    return c;
  }

  /** The number of decoder blocks (valid `capture` indices are 0 .. n-1). */
  get numOutputBlocks(): number {
    return this.outputBlocks.length;
  }

  // x [N, C_in, H, W] float32, t [N] timesteps -> output [N, C_out, H, W] float32 and the captured
  // decoder features [N, C_k, H_k, W_k] (in the torso's dtype).
  /**
   * Runs the model on images x [N, C_in, H, W] (float32, any range; [-1, 1] in pre-training) at
   * timesteps t [N]: the output [N, C_out, H, W] in float32 and the captured decoder-block outputs
   * [N, C_k, H_k, W_k] in the torso's dtype. H and W must be multiples of 2^(levels-1).
   * @throws TypeError naming the shapes when x or t do not fit; RangeError for a capture index that is not a decoder block.
   */
  forward(
    x: Activations,
    t: Tensor<"int64" | "int32" | "float32" | "float64", Device>,
    opts: ForwardOptions = {},
  ): ForwardResult {
    const c = this.config;
    if (x.ndim !== 4 || x.size(1) !== c.inChannels) {
      throw new TypeError(`UNet.forward: x must be [N, ${c.inChannels}, H, W], got [${x.shape.join(", ")}]`);
    }
    const levels = c.channelMult.length - 1;
    if (x.size(2) % 2 ** levels !== 0 || x.size(3) % 2 ** levels !== 0) {
      throw new TypeError(`UNet.forward: H and W must be multiples of ${2 ** levels}, got [${x.shape.join(", ")}]`);
    }
    if (t.ndim !== 1 || t.size(0) !== x.size(0)) {
      throw new TypeError(`UNet.forward: t must be [${x.size(0)}], got [${t.shape.join(", ")}]`);
    }
    const capture = opts.capture ?? [];
    for (const i of capture) {
      if (!Number.isInteger(i) || i < 0 || i >= this.outputBlocks.length) {
        throw new RangeError(
          `UNet.forward: capture index ${i} is not an output block (0..${this.outputBlocks.length - 1})`,
        );
      }
    }
    const last = opts.stopAfterCapture && capture.length ? Math.max(...capture) : this.outputBlocks.length - 1;

    return tidy(() => {
      const emb = tidy(() =>
        this.timeEmbed[1].forward(this.timeEmbed[0].forward(timestepEmbedding(t, c.modelChannels)).silu())
      );
      const skips: Activations[] = [];
      let h: Activations = x.to(c.torsoDtype);
      if (c.channelsLast) h = h.toMemoryFormat("channelsLast");
      for (const block of this.inputBlocks) {
        h = block.forward(h, emb);
        skips.push(h);
      }
      h = this.middleBlock.forward(h, emb);
      const captured = new Map<number, Activations>();
      for (let i = 0; i <= last; i++) {
        const prev = h, skip = skips.pop()!;
        const joined = cat([prev, skip], 1);
        // The skip and the previous h are dead after the concatenation: free them now, so that the
        // decoder holds one level's activations at a time (autograd keeps what backward needs).
        if (![...captured.values()].includes(prev)) prev.dispose();
        skip.dispose();
        h = this.outputBlocks[i].forward(joined, emb);
        joined.dispose();
        if (capture.includes(i)) captured.set(i, h);
      }
      let output: Activations | null = null;
      if (last === this.outputBlocks.length - 1) {
        output = tidy(() => this.outConv.forward(this.outNorm.forwardSilu(h.to("float32"))));
      }
      const features = capture.map((i) => captured.get(i)!);
      return { output, features };
    });
  }
}
