// Seeding: the global generators (torch.manual_seed) and independent seedable generators. These are
// libtorch's own generators, the ones its random ops (rand, randn, dropout, randperm) draw from on
// the tensor's device, so tensor randomness matches PyTorch's for a seed. The data layer has its own
// JS-side PRNG (src/data/rng.ts) so that image sampling neither disturbs nor depends on them.
import { DEVICE, DTYPE } from "../ffi/codes.ts";
import { STATUS as ST, sym } from "../ffi/lib.ts";
import { ints } from "../ffi/scratch.ts";
import type { NativePointer } from "../ffi/port.ts";
import { type Device, deviceCode } from "./device.ts";
import { check, fail } from "./checks.ts";
import { Tensor } from "./tensor.ts";
import { DisposedError } from "./error.ts";

const registry = new FinalizationRegistry<NativePointer>((h) => sym.mdm_generator_free(h));

function seedArg(seed: number | bigint): bigint {
  const s = BigInt(seed);
  if (s < 0n || s >= 2n ** 64n) throw new RangeError(`seed must be in [0, 2^64), got ${seed}`);
  return s;
}

/** Seeds the CPU generator and every CUDA generator, as `torch.manual_seed` does. */
export function manualSeed(seed: number | bigint): void {
  check(sym.mdm_manual_seed(seedArg(seed), ST), "manualSeed");
}

function getState(ptr: NativePointer | null, device: Device): Uint8Array {
  using t = new Tensor<"uint8">(sym.mdm_generator_get_state(ptr, deviceCode(device), ST) ?? fail("getState"));
  return t.toArray();
}

function setState(ptr: NativePointer | null, device: Device, state: Uint8Array): void {
  // The state as a uint8 CPU tensor, made here rather than by create.ts, which imports this module.
  const bytes = state.slice();
  using t = new Tensor<"uint8">(
    sym.mdm_from_data(bytes, bytes.byteLength, DTYPE.uint8, ints([bytes.length]), 1, DEVICE.cpu, ST) ??
      fail("setState"),
  );
  check(sym.mdm_generator_set_state(ptr, deviceCode(device), t.ptr, ST), "setState", t);
}

/**
 * The global generator's state, to save with a checkpoint.
 * The global generator's state for `device` (opaque bytes), to restore later with `setRngState`.
 */
export function getRngState(device: Device = "cpu"): Uint8Array {
  return getState(null, device);
}

/**
 * Restores the global generator of `device` to a state from `getRngState`.
 * @throws TorchError when `state` is not a state of that device's generator.
 */
export function setRngState(state: Uint8Array, device: Device = "cpu"): void {
  setState(null, device, state);
}

/** An independent random stream, for reproducible sampling that other code cannot disturb. */
export class Generator {
  #h: NativePointer | null;
  /** The device whose random numbers this generator draws. */
  readonly device: Device;

  /**
   * A generator seeded with `seed` (a non-negative integer below 2^64) for tensors on `device`.
   * @throws RangeError for a seed out of range; TorchError when `device` is not available.
   */
  constructor(seed: number | bigint, device: Device = "cpu") {
    this.device = device;
    this.#h = sym.mdm_generator_new(seedArg(seed), deviceCode(device), ST) ?? fail("Generator");
    registry.register(this, this.#h, this);
  }

  /** @internal */
  get ptr(): NativePointer {
    if (this.#h === null) throw new DisposedError("generator used after dispose()");
    return this.#h;
  }

  /** The generator's full state; `state = saved` restores it. */
  get state(): Uint8Array {
    return getState(this.ptr, this.device);
  }
  set state(s: Uint8Array) {
    setState(this.ptr, this.device, s);
  }

  /** Frees the generator's native state now; using it afterwards throws a DisposedError. */
  dispose(): void {
    if (this.#h === null) return;
    registry.unregister(this);
    sym.mdm_generator_free(this.#h);
    this.#h = null;
  }

  /** Frees the generator at the end of a `using` block; the same as `dispose()`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
