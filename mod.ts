/**
 * mdm: masked diffusion models in TypeScript on libtorch.
 *
 * This module exports the whole library. Each part is also a module of its own, for a tool that
 * needs only that part:
 *
 * - `tensor` (`./api/tensor.ts`): typed tensors, memory scopes, autograd, optimizers, `F`, runtime.
 * - `nn` (`./api/nn.ts`): `Module`, `VarBuilder`, layers and initialisers.
 * - `unet` (`./api/unet.ts`): guided-diffusion's UNet and its configuration.
 * - `mdm` (`./api/mdm.ts`): patch masking, SSIM, DDPM, the EMA, `Pretrainer` and training checkpoints.
 * - `segment` (`./api/segment.ts`): decoder features, pixel heads, sliding windows, metrics, protocols.
 * - `data` (`./api/data.ts`): image and array files, annotations, image folders, datasets.
 * - `io` (`./api/io.ts`): safetensors and `.pt` checkpoints, model weights, resource limits.
 * - `dist` (`./api/dist.ts`): process groups for distributed training.
 *
 * ```ts
 * import { full, manualSeed, maskPatches, rand, ssimLoss, tidy, UNet } from "./mod.ts";
 *
 * manualSeed(0);
 * const unet = new UNet({ imageSize: 32, modelChannels: 32, channelMult: [1, 2], attentionResolutions: [16] });
 * const loss = tidy(() => {
 *   const x = rand([2, 3, 32, 32]).mul(2).sub(1); // two images in [-1, 1]
 *   const { images } = maskPatches(x, [500, 500]); // half of the 8×8 patches hidden
 *   return ssimLoss(unet.forward(images, full([2], 500, { dtype: "int64" })).output!, x).item();
 * });
 * ```
 * @module
 */
export * from "./api/tensor.ts";
export * from "./api/nn.ts";
export * from "./api/unet.ts";
export * from "./api/mdm.ts";
export * from "./api/segment.ts";
export * from "./api/data.ts";
export * from "./api/io.ts";
export * from "./api/dist.ts";
