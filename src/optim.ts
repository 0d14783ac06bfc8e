// libtorch's optimizers over mdm tensors, with state export for checkpoints.
import { OPTIMIZER } from "../ffi/codes.ts";
import { STATUS as ST, sym } from "../ffi/lib.ts";
import type { NativePointer } from "../ffi/port.ts";
import type { Device } from "./device.ts";
import { DisposedError } from "./error.ts";
import { check, fail } from "./checks.ts";
import { type Tensor, tensorArray } from "./tensor.ts";

const registry = new FinalizationRegistry<NativePointer>((h) => sym.mdm_optim_free(h));

const STATE_MAGIC = "mdm-optimizer-state 1\n";

function parseState(bytes: Uint8Array, name: string): { kind: string; shapes: number[][]; body: Uint8Array } {
  const magic = new TextEncoder().encode(STATE_MAGIC);
  const fail = (why: string): never => {
    throw new TypeError(`${name}: not an optimizer state from stateBytes() (${why})`);
  };
  if (bytes.length < magic.length || magic.some((b, i) => bytes[i] !== b)) fail("no header");
  const end = bytes.indexOf(10, magic.length);
  if (end < 0) fail("header not terminated");
  let header: { kind?: unknown; shapes?: unknown };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(magic.length, end)));
  } catch {
    return fail("header is not JSON");
  }
  if (typeof header.kind !== "string" || !Array.isArray(header.shapes)) fail("header lacks kind or shapes");
  const body = bytes.subarray(end + 1);
  if (body.length === 0) fail("no state after the header");
  return { kind: header.kind as string, shapes: header.shapes as number[][], body };
}

/**
 * The optimizers' common interface: libtorch's optimizer over a fixed list of parameters, its
 * state saved and restored as bytes for exact resume. Free its native state with `dispose()` (or
 * `using`); the GC frees it otherwise.
 */
abstract class Optimizer {
  #h: NativePointer | null;
  /** The tensors this optimizer updates, in the order its state is saved. */
  readonly params: readonly Tensor<"float32" | "float64" | "float16" | "bfloat16", Device>[];

  /**
   * Creates libtorch's optimizer `kind` over `params` with its hyper-parameters in native order.
   * @throws TypeError when `params` is empty or a parameter does not require grad.
   */
  protected constructor(
    kind: keyof typeof OPTIMIZER,
    params: readonly Tensor<"float32" | "float64" | "float16" | "bfloat16", Device>[],
    hyper: number[],
  ) {
    const name = this.constructor.name;
    if (params.length === 0) throw new TypeError(`${name}: no parameters to optimize`);
    params.forEach((p, i) => {
      if (!p.requiresGrad) {
        throw new TypeError(`${name}: parameter ${i} (shape [${p.shape.join(", ")}]) does not require grad`);
      }
    });
    const hp = new Float64Array(hyper);
    this.params = [...params];
    this.#h = sym.mdm_optim_new(
      OPTIMIZER[kind],
      tensorArray(params),
      params.length,
      hp,
      hp.length,
      ST,
    ) ??
      fail(name, ...params);
    registry.register(this, this.#h, this);
  }

  get #ptr(): NativePointer {
    if (this.#h === null) throw new DisposedError(`${this.constructor.name} used after dispose()`);
    return this.#h;
  }

  /** Applies one update from the parameters' current gradients. */
  step(): void {
    check(sym.mdm_optim_step(this.#ptr, ST), `${this.constructor.name}.step`);
  }

  /** Zeroes the gradients (or drops them, the cheaper choice, with setToNone). */
  zeroGrad(setToNone = true): void {
    check(sym.mdm_optim_zero_grad(this.#ptr, setToNone ? 1 : 0, ST), `${this.constructor.name}.zeroGrad`);
  }

  /**
   * The learning rate (of every parameter group); setting it takes effect at the next step.
   * @throws RangeError when set to a negative value or NaN.
   */
  get lr(): number {
    const v = sym.mdm_optim_get_lr(this.#ptr, ST);
    if (v < 0) fail(`${this.constructor.name}.lr`);
    return v;
  }
  set lr(value: number) {
    if (!(value >= 0)) throw new RangeError(`learning rate must be non-negative, got ${value}`);
    check(sym.mdm_optim_set_lr(this.#ptr, value, ST), `${this.constructor.name}.lr`);
  }

  /**
   * The full optimizer state (moments, step counts, hyper-parameters) as bytes, to store in a
   * checkpoint: a header naming the optimizer and its parameter shapes, then libtorch's archive.
   */
  stateBytes(): Uint8Array {
    const blob = sym.mdm_optim_state_save(this.#ptr, ST) ?? fail(`${this.constructor.name}.stateBytes`);
    try {
      const header = new TextEncoder().encode(
        STATE_MAGIC + JSON.stringify({ kind: this.constructor.name, shapes: this.params.map((p) => p.shape) }) + "\n",
      );
      const out = new Uint8Array(header.length + Number(sym.mdm_blob_size(blob)));
      out.set(header);
      const body = out.subarray(header.length);
      check(sym.mdm_blob_copy(blob, body, BigInt(body.length), ST), "stateBytes");
      return out;
    } finally {
      sym.mdm_blob_free(blob);
    }
  }

  /**
   * Restores a state from `stateBytes()` of the same kind of optimizer over parameters of the same
   * shapes, hyper-parameters (lr included) too, as torch.optim's load_state_dict does.
   */
  loadStateBytes(bytes: Uint8Array): void {
    const name = `${this.constructor.name}.loadStateBytes`;
    const { kind, shapes, body } = parseState(bytes, name);
    if (kind !== this.constructor.name) {
      throw new TypeError(`${name}: the state is ${kind}'s, not ${this.constructor.name}'s`);
    }
    if (shapes.length !== this.params.length) {
      throw new TypeError(
        `${name}: the state covers ${shapes.length} parameters, this optimizer has ${this.params.length}`,
      );
    }
    this.params.forEach((p, i) => {
      if (p.shape.join() !== shapes[i].join()) {
        throw new TypeError(
          `${name}: parameter ${i} has shape [${p.shape.join(", ")}], the state's has [${shapes[i].join(", ")}]`,
        );
      }
    });
    check(
      sym.mdm_optim_state_load(
        this.#ptr,
        body as Uint8Array<ArrayBuffer>,
        BigInt(body.length),
        ST,
      ),
      name,
    );
  }

  /** Frees the optimizer's native state now (its moments); using it afterwards throws a DisposedError. */
  dispose(): void {
    if (this.#h === null) return;
    registry.unregister(this);
    sym.mdm_optim_free(this.#h);
    this.#h = null;
  }

  /** Frees the optimizer at the end of a `using` block; the same as `dispose()`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Hyper-parameters of Adam and AdamW, as torch.optim names them. */
export interface AdamOptions {
  /** Learning rate (1e-3). */
  lr?: number;
  /** Decay rates of the first and second moment estimates ([0.9, 0.999]). */
  betas?: [number, number];
  /** Added to the denominator for numerical stability (1e-8). */
  eps?: number;
  /** Weight decay (Adam: L2 added to the gradient, default 0; AdamW: decoupled, default 0.01). */
  weightDecay?: number;
  /** Use the maximum of past second moments (AMSGrad) (false). */
  amsgrad?: boolean;
}

type Params = readonly Tensor<"float32" | "float64" | "float16" | "bfloat16", Device>[];

function adamHyper(hyper: AdamOptions, defaultDecay: number): number[] {
  const [b1, b2] = hyper.betas ?? [0.9, 0.999];
  return [hyper.lr ?? 1e-3, b1, b2, hyper.eps ?? 1e-8, hyper.weightDecay ?? defaultDecay, hyper.amsgrad ? 1 : 0];
}

/** Adam with L2 weight decay added to the gradient (torch.optim.Adam). Defaults as in PyTorch. */
export class Adam extends Optimizer {
  /**
   * An optimizer over `params` (floating-point tensors that require grad).
   * @throws TypeError when `params` is empty or a parameter does not require grad.
   */
  constructor(params: Params, hyper: AdamOptions = {}) {
    super("adam", params, adamHyper(hyper, 0));
  }
}

/** Adam with decoupled weight decay (torch.optim.AdamW; weight decay 0.01 by default, as there). */
export class AdamW extends Optimizer {
  /**
   * An optimizer over `params` (floating-point tensors that require grad).
   * @throws TypeError when `params` is empty or a parameter does not require grad.
   */
  constructor(params: Params, hyper: AdamOptions = {}) {
    super("adamw", params, adamHyper(hyper, 0.01));
  }
}

/** Hyper-parameters of SGD, as torch.optim names them. */
export interface SGDOptions {
  /** Learning rate (required). */
  lr: number;
  /** Momentum factor (0). */
  momentum?: number;
  /** Dampening of the momentum (0). */
  dampening?: number;
  /** L2 penalty added to the gradient (0). */
  weightDecay?: number;
  /** Nesterov momentum (false). */
  nesterov?: boolean;
}

/** Stochastic gradient descent with optional momentum (torch.optim.SGD). */
export class SGD extends Optimizer {
  /**
   * An optimizer over `params` (floating-point tensors that require grad).
   * @throws TypeError when `params` is empty or a parameter does not require grad.
   */
  constructor(params: Params, hyper: SGDOptions) {
    super("sgd", params, [
      hyper.lr,
      hyper.momentum ?? 0,
      hyper.dampening ?? 0,
      hyper.weightDecay ?? 0,
      hyper.nesterov ? 1 : 0,
    ]);
  }
}

export type { Optimizer };
