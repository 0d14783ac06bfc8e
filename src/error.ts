// Errors raised by libtorch, carrying the op and the shapes it was called with.

/**
 * An operation libtorch rejected (a shape mismatch, an unsupported dtype, an out-of-range index).
 * The message names the mdm op and its tensor inputs' shapes, then libtorch's own message.
 */
export class TorchError extends Error {
  /** Always "TorchError". */
  override name = "TorchError";
  /** Builds the error from libtorch's message, the op and its inputs' shapes. */
  constructor(
    /** libtorch's own message. */
    readonly torchMessage: string,
    /** The mdm operation that failed. */
    readonly op: string,
    /** Shapes of the tensor inputs, in argument order (null for a disposed or absent tensor). */
    readonly inputShapes: (readonly number[] | null)[],
  ) {
    const shapes = inputShapes.map((s) => (s ? `[${s.join(", ")}]` : "-")).join(", ");
    super(`${op}(${shapes}): ${torchMessage}`);
  }
}

/** Thrown when a tensor is used after `dispose()`. */
export class DisposedError extends Error {
  /** Always "DisposedError". */
  override name = "DisposedError";
}
