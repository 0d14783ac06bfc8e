/**
 * guided-diffusion's UNet (the model MDM pre-trains), its configuration with guided-diffusion's
 * defaults and the paper's presets, and its blocks. State-dict keys equal guided-diffusion's, so
 * its checkpoints load as they are (see `loadModel` in the `io` module).
 *
 * ```ts
 * import { UNet } from "./unet.ts";
 * import { randn, tensor } from "./tensor.ts";
 *
 * const unet = new UNet({ imageSize: 32, modelChannels: 32, channelMult: [1, 2], attentionResolutions: [16] });
 * const { output } = unet.forward(randn([1, 3, 32, 32]), tensor([10])); // output [1, 3, 32, 32]
 * ```
 * @module
 */
export { type ForwardOptions, type ForwardResult, UNet } from "../src/models/unet/unet.ts";
export {
  defaultChannelMult,
  defaultChannelsLast,
  FFHQ_256,
  MEDICAL_256,
  resolveConfig,
  type UNetConfig,
} from "../src/models/unet/config.ts";
export { AttentionBlock, type AttentionOptions } from "../src/models/unet/attention.ts";
export { ResBlock, type ResBlockOptions } from "../src/models/unet/resblock.ts";
export { timestepEmbedding } from "../src/models/unet/timestep.ts";
