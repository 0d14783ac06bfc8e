/**
 * Tensors and memory: typed tensor handles on libtorch, creation and random functions, memory
 * scopes, autograd modes, optimizers, the functional ops (`F`) and the runtime's threads and memory.
 *
 * A `Tensor<D, V>` carries its dtype `D` and device `V` in its type. Every tensor holds native
 * memory: free it with `dispose()`, `using`, or an enclosing `tidy(fn)`.
 *
 * ```ts
 * import { F, randn, tidy } from "./tensor.ts";
 *
 * const y = tidy(() => F.linear(randn([2, 8]), randn([4, 8])).relu()); // [2, 4] float32
 * console.log(y.shape, y.toArray());
 * y.dispose();
 * ```
 * @module
 */
export { defaultDevice, type Device, setDefaultDevice } from "../src/device.ts";
export {
  type DType,
  type DTypeOf,
  DTYPES,
  type FloatDType,
  type HostArray,
  type HostArrays,
  type IntDType,
  isFloat,
  type Promote,
} from "../src/dtype.ts";
export { DisposedError, TorchError } from "../src/error.ts";
export { type FloatTensor, liveTensors, type MemoryFormat, Tensor, type ToOptions } from "../src/tensor.ts";
export { keep, SCOPE, type Scope, type Scoped, tidy } from "../src/scope.ts";
export {
  arange,
  bernoulli,
  type CreateOptions,
  full,
  type HostData,
  linspace,
  type Nested,
  ones,
  rand,
  randint,
  randn,
  type RandomOptions,
  randperm,
  tensor,
  zeros,
} from "../src/create.ts";
export { Generator, getRngState, manualSeed, setRngState } from "../src/random.ts";
export { enableGrad, isGradEnabled, noGrad } from "../src/autograd.ts";
export { Adam, type AdamOptions, AdamW, type Optimizer, SGD, type SGDOptions } from "../src/optim.ts";
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
} from "../src/runtime.ts";
/**
 * The functional neural-network ops, as torch.nn.functional has them: `F.linear`, `F.conv2d`,
 * `F.groupNorm`, `F.interpolate`, `F.crossEntropy`, `F.mseLoss`, `F.scaledDotProductAttention`, ...
 */
export * as F from "../src/functional.ts";
export { cat, stack, where } from "../src/functional.ts";
