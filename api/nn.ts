/**
 * Neural-network building blocks: `Module` (state dicts, train/eval, device and dtype moves), the
 * name-scoped `VarBuilder` that gives every parameter its PyTorch state-dict key, the layers
 * guided-diffusion's UNet and the pixel classifier are made of, and the initialisers (`init`).
 *
 * ```ts
 * import { Linear, rootBuilder } from "./nn.ts";
 * import { randn } from "./tensor.ts";
 *
 * const fc = new Linear(rootBuilder().pp("fc"), 8, 4); // keys fc.weight [4, 8], fc.bias [4]
 * using y = fc.forward(randn([2, 8])); // [2, 4]
 * ```
 * @module
 */
export { type Init, type LoadReport, ParamStore, VarBuilder } from "../src/nn/builder.ts";
export { Module, rootBuilder, type StateDict, StateDictError } from "../src/nn/module.ts";
export {
  BatchNorm1d,
  Conv,
  Conv1d,
  Conv2d,
  type ConvOptions,
  Downsample,
  GroupNorm,
  Linear,
  Upsample,
} from "../src/nn/layers.ts";
/**
 * Parameter initialisers (`Init` functions): `init.uniform`, `init.torchDefault` (PyTorch's default
 * for conv and linear layers), `init.normal`, `init.zerosInit`, `init.constant`.
 */
export * as init from "../src/nn/init.ts";
