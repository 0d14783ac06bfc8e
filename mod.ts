/**
 * mdm: masked diffusion models in TypeScript on libtorch.
 *
 * This module exports the tensor layer: typed tensor handles, memory scopes, autograd and
 * optimizers.
 * @module
 */
export { defaultDevice, type Device, setDefaultDevice } from "./src/device.ts";
export { type DType, type FloatDType, type HostArray, type IntDType } from "./src/dtype.ts";
export { DisposedError, TorchError } from "./src/error.ts";
export { liveTensors, Tensor, type ToOptions } from "./src/tensor.ts";
export { keep, tidy } from "./src/scope.ts";
export {
  arange,
  bernoulli,
  type CreateOptions,
  full,
  linspace,
  ones,
  rand,
  randint,
  randn,
  type RandomOptions,
  randperm,
  tensor,
  zeros,
} from "./src/create.ts";
export { Generator, getRngState, manualSeed, setRngState } from "./src/random.ts";
export { enableGrad, isGradEnabled, noGrad } from "./src/autograd.ts";
export { Adam, type AdamOptions, AdamW, type Optimizer, SGD, type SGDOptions } from "./src/optim.ts";
export {
  type CpuMemoryStats,
  cpuMemoryStats,
  cudaAvailable,
  cudaDeviceCount,
  emptyCpuCache,
  getNumThreads,
  resetCpuPeakMemory,
  setBlasThreads,
  setNumThreads,
  synchronize,
  torchVersion,
} from "./src/runtime.ts";
export * as F from "./src/functional.ts";
export { cat, stack, where } from "./src/functional.ts";
export { CheckpointError, LoadedTensors, type SkippedEntry } from "./src/io/common.ts";
export { loadSafetensors, saveSafetensors } from "./src/io/safetensors.ts";
export { loadPt } from "./src/io/pt.ts";
export { loadCheckpoint, loadModel, loadModelWeights } from "./src/io/weights.ts";
