// Errors raised by libtorch, carrying the op and the shapes it was called with.

export class TorchError extends Error {
  override name = "TorchError";
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
  override name = "DisposedError";
}
