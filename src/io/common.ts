// What the checkpoint readers share: their error type and the map of tensors they return.
import type { Tensor } from "../tensor.ts";

/** A checkpoint that cannot be read or written; the message starts with the file's path. */
export class CheckpointError extends Error {
  override name = "CheckpointError";
  constructor(readonly path: string, readonly problem: string, options?: ErrorOptions) {
    super(`${path}: ${problem}`, options);
  }
}

/** An entry of a checkpoint that was not loaded, and why. */
export interface SkippedEntry {
  name: string;
  reason: string;
}

/**
 * Tensors by name, as a checkpoint held them, plus what else the file said: the safetensors
 * `__metadata__` strings and the entries a `.pt` file held that are not tensors mdm can hold.
 * The tensors belong to the caller: `dispose()` frees them all (or `using`, or an enclosing tidy).
 */
export class LoadedTensors extends Map<string, Tensor> {
  constructor(
    entries: Iterable<readonly [string, Tensor]> = [],
    readonly metadata: Readonly<Record<string, string>> = {},
    readonly skipped: readonly SkippedEntry[] = [],
  ) {
    super(entries);
  }

  dispose(): void {
    for (const t of this.values()) t.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Frees tensors made before a failure, so a rejected file leaks nothing. */
export function disposeAll(ts: Iterable<Tensor>): void {
  for (const t of ts) t.dispose();
}
