// Process-wide settings and facts: threads, CUDA, the libtorch version.
import { cString, STATUS as ST, sym } from "../ffi/lib.ts";
import { type Device, deviceCode } from "./device.ts";
import { check } from "./tensor.ts";

/** Sets libtorch's intra-op thread count (it starts at one here). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setNumThreads: need a positive integer, got ${n}`);
  sym.mdm_set_num_threads(n);
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
