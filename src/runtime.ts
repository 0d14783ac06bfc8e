// Process-wide settings and facts: threads, CUDA, the libtorch version.
import { cString, STATUS as ST, sym } from "../ffi/lib.ts";
import { type Device, deviceCode } from "./device.ts";
import { check } from "./tensor.ts";

/**
 * Sets libtorch's intra-op thread count (it starts at one here). The BLAS's own thread pool, when
 * it has one (OpenBLAS), is set to `blas` threads, one by default: libtorch already spreads work
 * over its threads, and a second pool on top oversubscribes the cores (a UNet training step ran 2.4×
 * slower that way on 2 cores). Large single matrix products do gain from BLAS threads: see
 * `setBlasThreads`.
 */
export function setNumThreads(n: number, opts: { blas?: number } = {}): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setNumThreads: need a positive integer, got ${n}`);
  sym.mdm_set_num_threads(n);
  setBlasThreads(opts.blas ?? 1);
}

/** Sets the BLAS's own thread count; returns false when the BLAS has no such setting. */
export function setBlasThreads(n: number): boolean {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setBlasThreads: need a positive integer, got ${n}`);
  return sym.mdm_set_blas_threads(n) === 1;
}

export function getNumThreads(): number {
  return sym.mdm_get_num_threads();
}

export function cudaAvailable(): boolean {
  return sym.mdm_cuda_available() === 1;
}

export function cudaDeviceCount(): number {
  return sym.mdm_cuda_device_count();
}

/** Waits for every queued kernel on a CUDA device; a no-op for the CPU. */
export function synchronize(device: Device = "cuda"): void {
  const code = deviceCode(device);
  if (code >= 0) check(sym.mdm_synchronize(code, ST), "synchronize");
}

/** The version of the libtorch the native library was built against. */
export function torchVersion(): string {
  return cString(sym.mdm_torch_version());
}
