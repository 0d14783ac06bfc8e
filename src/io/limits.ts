// Resource limits for the decoders and parsers of untrusted files (images, annotations, arrays,
// checkpoints). A small file must not be able to make a reader allocate gigabytes, loop forever or
// recurse off the stack: every size, count and depth a file declares is checked against these
// before anything is allocated or walked. The defaults suit the data and models mdm works with;
// a caller with larger inputs raises the one a file exceeds (the error names it).

/** Limits a reader enforces; each reader documents the ones it uses. Omitted fields take the defaults. */
export interface Limits {
  /** Most pixels (width × height) an image may declare. Default 2^26 (8192 × 8192). */
  maxPixels?: number;
  /**
   * Most bytes a reader may make beyond what the file itself holds: a decompressed image's samples
   * (at most 2^26 pixels × 4 samples × 2 bytes at the default), a checkpoint's tensors in excess of
   * the file's size (views that repeat or share storage elements), the names of flattened entries.
   * Default 2^29 (512 MiB).
   */
  maxBytes?: number;
  /** Deepest nesting of containers: dicts in a checkpoint, elements in an XML file. Default 1000. */
  maxDepth?: number;
  /**
   * Most entries: values a pickle builds, entries of a nested checkpoint dict (counting every
   * path to a shared one), zip entries, tensors in a safetensors header, XML regions and vertices.
   * Default 1 000 000.
   */
  maxEntries?: number;
  /** Most decimal digits of an integer in a pickle (LONG1/LONG4). Default 4300, Python's own limit. */
  maxIntegerDigits?: number;
}

/** The limits readers use where their caller gives none. */
export const DEFAULT_LIMITS: Readonly<Required<Limits>> = Object.freeze({
  maxPixels: 2 ** 26,
  maxBytes: 2 ** 29,
  maxDepth: 1000,
  maxEntries: 1_000_000,
  maxIntegerDigits: 4300,
});

/**
 * The most dimensions a tensor or array read from a file may have (NumPy 2's limit; mdm's native
 * shape buffers hold 256).
 */
export const MAX_DIMS = 64;

/** A file that declares more than a limit allows. Readers throw it as the cause of their own error class. */
export class LimitError extends RangeError {
  /** Always "LimitError". */
  override name = "LimitError";
  /** An error saying that `what` exceeds `limit` (= `max`) with `value`. */
  constructor(
    /** The limit that was exceeded. */
    readonly limit: keyof Limits,
    /** What the file declared or needed (a count, bytes, a depth). */
    readonly value: number,
    /** The limit's value. */
    readonly max: number,
    /** What exceeded it, e.g. "an image of 100000x100000 pixels". */
    what: string,
  ) {
    super(`${what} exceeds the limit ${limit} = ${max} (raise it with the ${limit} option)`);
  }
}

/**
 * `opts`'s limits with the defaults filled in. Throws a TypeError for a limit that is not a
 * positive number (Infinity is allowed, turning that limit off).
 */
export function resolveLimits(opts: Limits = {}): Required<Limits> {
  const out = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(DEFAULT_LIMITS) as (keyof Limits)[]) {
    const v = opts[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !(v > 0) || (Number.isFinite(v) && !Number.isInteger(v))) {
      throw new TypeError(`limit ${key} must be a positive integer (or Infinity), got ${String(v)}`);
    }
    out[key] = v;
  }
  return out;
}

/** Throws a LimitError when `value` is over `limits[key]`. */
export function checkLimit(limits: Required<Limits>, key: keyof Limits, value: number, what: string): void {
  if (value > limits[key]) throw new LimitError(key, value, limits[key], what);
}

/** A short, always-printable rendering of an untrusted value for an error message. */
export function show(v: unknown, max = 60): string {
  let s: string;
  try {
    const cut = typeof v === "string" && v.length > max ? v.slice(0, max) : v;
    s = typeof cut === "bigint" ? `${cut}` : JSON.stringify(cut) ?? String(cut);
  } catch {
    s = `<${typeof v}>`;
  }
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}
