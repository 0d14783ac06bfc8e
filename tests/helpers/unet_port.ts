// Shared by the tests that compare mdm's UNet with the PyTorch port (tests/unet_ref.py): the
// config in the port's keyword arguments, the Python lines that build it, and its randomisation.
import { noGrad, randn } from "../../mod.ts";
import { resolveConfig, type UNetConfig } from "../../src/models/unet/config.ts";
import type { UNet } from "../../src/models/unet/unet.ts";
import { DEVICE } from "./torch_ref.ts";

export type Config = Partial<UNetConfig> & { imageSize: number };

/** The resolved config as the port's (guided-diffusion's) keyword arguments. */
export function pyConfig(cfg: Config): Record<string, unknown> {
  const c = resolveConfig(cfg);
  return {
    image_size: c.imageSize,
    in_channels: c.inChannels,
    model_channels: c.modelChannels,
    out_channels: c.outChannels,
    num_res_blocks: c.numResBlocks,
    attention_resolutions: c.attentionResolutions,
    channel_mult: c.channelMult,
    dropout: c.dropout,
    num_heads: c.numHeads,
    num_head_channels: c.numHeadChannels,
    num_heads_upsample: c.numHeadsUpsample,
    resblock_updown: c.resblockUpdown,
    use_scale_shift_norm: c.useScaleShiftNorm,
    use_new_attention_order: c.useNewAttentionOrder,
    conv_resample: c.convResample,
  };
}

/** Python lines importing the port and building `model` from the config (`extra`: more kwargs). */
export function pyModel(cfg: Config, extra = ""): string {
  return `import copy, json, unet_ref as U\n` +
    `model = U.UNetModel(**json.loads(${JSON.stringify(JSON.stringify(pyConfig(cfg)))})${extra}).eval()\n`;
}

/** The port's rule (unet_ref.randomize): 1-D weights are GroupNorm scales, 1 + 0.1·N(0,1); the rest
 * 0.1·N(0,1). Zero-initialised layers would otherwise make the output identically zero. */
export function randomize(model: UNet): UNet {
  noGrad(() => {
    for (const [name, p] of model.namedParameters()) {
      using z = randn(p.shape, { device: DEVICE }).mul(0.1);
      if (p.ndim === 1 && name.endsWith("weight")) z.add_(1);
      p.copy_(z);
    }
  });
  return model;
}
