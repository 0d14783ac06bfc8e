// Process-wide settings and facts: threads, CUDA, the libtorch version.
import { cString, STATUS as ST, sym } from "../ffi/lib.ts";
import { type Device, deviceCode } from "./device.ts";
import { check } from "./checks.ts";

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

/** libtorch's intra-op thread count. */
export function getNumThreads(): number {
  return sym.mdm_get_num_threads();
}

/** Whether the native library was built with CUDA and a CUDA device is present. */
export function cudaAvailable(): boolean {
  return sym.mdm_cuda_available() === 1;
}

/** The number of CUDA devices (0 without CUDA). */
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

/** CPU tensor memory as mdm's caching allocator counts it (`native/allocator.cpp`). */
export interface CpuMemoryStats {
  /** Bytes held by live CPU tensors; blocks of 128 KiB and up count in whole 4 KiB pages. */
  allocated: number;
  /** The most `allocated` has been since the start or the last `resetCpuPeakMemory`. */
  peakAllocated: number;
  /** Bytes the allocator keeps mapped for reuse, on top of `allocated`. */
  cached: number;
  /** Segments (the allocator's mappings) made and released so far. */
  segmentsMapped: number;
  /** Segments returned to the system so far. */
  segmentsUnmapped: number;
}

/** CPU memory figures, or null when the caching allocator is off (MDM_CPU_CACHE=0). */
export function cpuMemoryStats(): CpuMemoryStats | null {
  const out = new BigInt64Array(5);
  if (sym.mdm_cpu_memory_stats(out) === 0) return null;
  const [allocated, peakAllocated, cached, segmentsMapped, segmentsUnmapped] = Array.from(out, Number);
  return { allocated, peakAllocated, cached, segmentsMapped, segmentsUnmapped };
}

/**
 * Unmaps the allocator's wholly free segments, returning their memory to the system, as
 * `torch.cuda.empty_cache()` does for CUDA: for a long-lived process after a memory-heavy phase.
 */
export function emptyCpuCache(): void {
  sym.mdm_empty_cpu_cache();
}

/**
 * Starts the peak of `cpuMemoryStats` afresh from the current allocation. The cache's bound (half
 * again that peak) restarts with it.
 */
export function resetCpuPeakMemory(): void {
  sym.mdm_reset_cpu_peak_memory();
}
