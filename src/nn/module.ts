// The module base: a view of a shared parameter store under a name prefix, with state dicts,
// train/eval, parameter counts and device/dtype moves.
import { noGrad } from "../autograd.ts";
import { defaultDevice, type Device } from "../device.ts";
import type { DType, FloatDType } from "../dtype.ts";
import type { Tensor } from "../tensor.ts";
import { type LoadReport, ParamStore, VarBuilder } from "./builder.ts";

export type { LoadReport };

/** Tensors by state-dict key (the live tensors of a model, or values to load into one). */
export type StateDict = Map<string, Tensor>;

/**
 * A state dict that does not fit a model: the message lists the missing and unexpected keys and the
 * shape mismatches (up to eight of each).
 */
export class StateDictError extends Error {
  /** Always "StateDictError". */
  override name = "StateDictError";
  /** Describes `report`'s missing, unexpected and mis-shaped keys. */
  constructor(readonly report: LoadReport) {
    const parts: string[] = [];
    const list = (xs: string[]) => xs.slice(0, 8).join(", ") + (xs.length > 8 ? `, ... (${xs.length} in all)` : "");
    if (report.missing.length) parts.push(`missing keys: ${list(report.missing)}`);
    if (report.unexpected.length) parts.push(`unexpected keys: ${list(report.unexpected)}`);
    if (report.mismatched.length) {
      parts.push(
        `shape mismatches: ${
          list(report.mismatched.map((m) => `${m.key} (model [${m.expected.join(", ")}], file [${m.got.join(", ")}])`))
        }`,
      );
    }
    super(`state dict does not match the model: ${parts.join("; ")}`);
  }
}

/**
 * The base of every layer and model: a view of a shared `ParamStore` under the module's name
 * prefix, with PyTorch's state-dict keys, train/eval mode, parameter lists and device/dtype moves.
 * A subclass creates its parameters and child modules in its constructor through the `VarBuilder`
 * it is given, and defines its own `forward`.
 */
export abstract class Module {
  /** The store holding the whole model's tensors (shared by every module of the model). */
  readonly store: ParamStore;
  /** This module's key prefix in the store ("" for the root module). */
  readonly prefix: string;

  /** Binds the module to `vb`'s store and prefix; create parameters with `vb.param`. */
  constructor(vb: VarBuilder) {
    this.store = vb.store;
    this.prefix = vb.prefix;
  }

  /** Whether the model is in training mode (dropout and batch-norm statistics on). */
  get training(): boolean {
    return this.store.training;
  }

  /** Switches dropout and batch norm to training behaviour (for the whole model). */
  train(on = true): this {
    this.store.training = on;
    return this;
  }

  /** Switches the whole model to evaluation behaviour; the same as `train(false)`. */
  eval(): this {
    return this.train(false);
  }

  #own<T>(m: Map<string, T>): [string, T][] {
    if (!this.prefix) return [...m];
    const p = this.prefix + ".";
    return [...m].filter(([k]) => k.startsWith(p)).map(([k, v]) => [k.slice(p.length), v]);
  }

  /** Parameters of this module and its children, keyed like PyTorch's named_parameters(). */
  namedParameters(): [string, Tensor<FloatDType>][] {
    return this.#own(this.store.params);
  }

  /** This module's parameters (the live tensors), in `namedParameters` order. */
  parameters(): Tensor<FloatDType>[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** The number of trainable elements in this module's parameters. */
  numParameters(): number {
    return this.parameters().reduce((n, t) => n + t.numel, 0);
  }

  /** Parameters and buffers by state-dict key. The tensors are the live ones, not copies. */
  stateDict(): StateDict {
    return new Map<string, Tensor>([...this.#own(this.store.params), ...this.#own(this.store.buffers)]);
  }

  /**
   * Copies values into the module's tensors (converting dtype and device as needed). Strict mode
   * rejects missing keys, unexpected keys and shape mismatches, naming them; otherwise the matching
   * keys are loaded and the rest reported.
   * @throws StateDictError in strict mode, naming the missing, unexpected and mis-shaped keys.
   */
  loadStateDict(dict: StateDict | Record<string, Tensor>, opts: { strict?: boolean } = {}): LoadReport {
    const source = dict instanceof Map ? dict : new Map(Object.entries(dict));
    const own = this.stateDict();
    const report: LoadReport = { loaded: [], missing: [], unexpected: [], mismatched: [] };
    for (const key of own.keys()) if (!source.has(key)) report.missing.push(key);
    for (const [key, t] of source) {
      const target = own.get(key);
      if (!target) report.unexpected.push(key);
      else if (target.shape.join() !== t.shape.join()) {
        report.mismatched.push({ key, expected: target.shape, got: t.shape });
      }
    }
    const strict = opts.strict ?? true;
    if (strict && (report.missing.length || report.unexpected.length || report.mismatched.length)) {
      throw new StateDictError(report);
    }
    noGrad(() => {
      for (const [key, target] of own) {
        const t = source.get(key);
        if (!t || target.shape.join() !== t.shape.join()) continue;
        target.copy_(t);
        report.loaded.push(key);
      }
    });
    return report;
  }

  /** Moves every parameter and buffer of the model; existing handles stay valid. */
  to(target: { device?: Device; dtype?: FloatDType }): this {
    noGrad(() => {
      const move = (t: Tensor, dtype: DType) => {
        using moved = t.to({ dtype, device: target.device ?? t.device });
        t.setData_(moved);
      };
      for (const t of this.store.params.values()) move(t, target.dtype ?? t.dtype);
      for (const t of this.store.buffers.values()) {
        move(t, t.dtype === "float32" && target.dtype ? target.dtype : t.dtype);
      }
    });
    return this;
  }
}

/**
 * A fresh store and root builder for a model. With `weights` (loaded tensors by state-dict key), the
 * model built on it takes each tensor found there instead of initialising it, and the map loses
 * the tensors taken; `builder.store.loadReport()` then tells what was loaded, initialised and left.
 */
export function rootBuilder(
  opts: { dtype?: FloatDType; device?: Device; weights?: Map<string, Tensor> } = {},
): VarBuilder {
  return new VarBuilder(new ParamStore(opts.dtype ?? "float32", opts.device ?? defaultDevice(), opts.weights));
}
