// What the checkpoint readers share: their error type and the map of tensors they return.
import type { Tensor } from "../tensor.ts";

/** A checkpoint that cannot be read or written; the message starts with the file's path. */
export class CheckpointError extends Error {
  /** Always "CheckpointError". */
  override name = "CheckpointError";
  /** An error for the file `path` saying `problem`, with `options.cause` (e.g. a LimitError). */
  constructor(readonly path: string, readonly problem: string, options?: ErrorOptions) {
    super(`${path}: ${problem}`, options);
  }
}

/** An entry of a checkpoint that was not loaded, and why. */
export interface SkippedEntry {
  /** The entry's name in the file (a dotted path for nested dicts). */
  name: string;
  /** Why it was skipped (not a tensor, a dtype mdm lacks, ...). */
  reason: string;
}

/**
 * Tensors by name, as a checkpoint held them, plus what else the file said: the safetensors
 * `__metadata__` strings and the entries a `.pt` file held that are not tensors mdm can hold.
 * The tensors belong to the caller: `dispose()` frees them all (or `using`, or an enclosing tidy).
 */
export class LoadedTensors extends Map<string, Tensor> {
  /** Tensors by name, with the file's metadata and the entries it skipped. */
  constructor(
    entries: Iterable<readonly [string, Tensor]> = [],
    readonly metadata: Readonly<Record<string, string>> = {},
    readonly skipped: readonly SkippedEntry[] = [],
  ) {
    super(entries);
  }

  /** Frees every tensor in the map. */
  dispose(): void {
    for (const t of this.values()) t.dispose();
  }

  /** Frees every tensor at the end of a `using` block; the same as `dispose()`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Frees tensors made before a failure, so a rejected file leaks nothing. */
export function disposeAll(ts: Iterable<Tensor>): void {
  for (const t of ts) t.dispose();
}
