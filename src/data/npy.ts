// NumPy .npy files (format versions 1.0, 2.0 and 3.0): little-endian numeric arrays in C order, as
// written by `np.save`. Used for the class maps of the ddpm-segmentation datasets.
//
// Layout: the magic "\x93NUMPY", major and minor version bytes, the header length (u16 in 1.0,
// u32 in 2.0/3.0, little-endian), an ASCII (3.0: UTF-8) Python dict literal
// {'descr': '<i4', 'fortran_order': False, 'shape': (H, W), } padded with spaces and a newline,
// then the raw data.
import { readBytes } from "../io/fs.ts";
import { checkLimit, type Limits, MAX_DIMS, resolveLimits, show } from "../io/limits.ts";

/** A .npy file that cannot be read; the message starts with the file's path. */
export class NpyError extends Error {
  /** An error for `path` saying `problem`, with `options.cause`. */
  constructor(readonly path: string, problem: string, options?: ErrorOptions) {
    super(`${path}: ${problem}`, options);
    this.name = "NpyError";
  }
}

/**
 * The NumPy dtypes mdm reads, as .npy headers spell them without the byte order: unsigned (u),
 * signed (i) integers and floats (f) of 1 to 8 bytes, and booleans (b1).
 */
export type NpyDType = "u1" | "i1" | "b1" | "u2" | "i2" | "u4" | "i4" | "i8" | "u8" | "f4" | "f8";

/** The typed array holding an array's elements for each NpyDType (b1 as bytes). */
export type NpyData =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | BigInt64Array
  | BigUint64Array
  | Float32Array
  | Float64Array;

/** A decoded .npy array. */
export interface NpyArray {
  /** The element type. */
  dtype: NpyDType;
  /** The size of each dimension ([] for a scalar). */
  shape: number[];
  /** Elements in C (row-major) order. */
  data: NpyData;
}

const ITEM_SIZE: Record<NpyDType, number> = {
  u1: 1,
  i1: 1,
  b1: 1,
  u2: 2,
  i2: 2,
  u4: 4,
  i4: 4,
  i8: 8,
  u8: 8,
  f4: 4,
  f8: 8,
};

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/**
 * Reads a .npy file. Limits (see Limits): `maxBytes` caps the array's data (default 512 MiB).
 * Throws an NpyError naming the file for anything it cannot read.
 */
export async function readNpy(path: string, opts: Limits = {}): Promise<NpyArray> {
  let bytes: Uint8Array;
  try {
    bytes = await readBytes(path);
  } catch (e) {
    throw new NpyError(path, `cannot read file (${(e as Error).message})`, { cause: e });
  }
  return decodeNpy(bytes, path, opts);
}

/**
 * Decodes .npy bytes; `name` (usually the path) heads every error message. The data must lie in
 * the file in full; `opts.maxBytes` caps it (default 512 MiB). Throws an NpyError (its cause a
 * LimitError when the limit was exceeded).
 */
export function decodeNpy(bytes: Uint8Array, name = "<npy>", opts: Limits = {}): NpyArray {
  const limits = resolveLimits(opts);
  const fail = (problem: string, cause?: unknown): never => {
    throw new NpyError(name, problem, cause === undefined ? undefined : { cause });
  };
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) fail("not a .npy file (bad magic bytes)");
  const major = bytes[6], minor = bytes[7];
  if (major < 1 || major > 3) fail(`unsupported .npy format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lenBytes) fail("truncated header");
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = 8 + lenBytes, dataStart = start + headerLen;
  if (dataStart > bytes.length) fail(`truncated header (${headerLen} bytes announced, file has ${bytes.length})`);
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(start, dataStart));

  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    fail(`malformed header ${show(header.trim(), 200)}`);
  }
  if (fortran === "True") {
    fail("fortran_order arrays are not supported (save a C-ordered array, e.g. np.ascontiguousarray)");
  }
  const dims = shapeText!.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (dims.length > MAX_DIMS) fail(`shape of ${dims.length} dimensions (at most ${MAX_DIMS})`);
  const shape = dims.map((s) => {
    const d = /^\d+L?$/.test(s) ? parseInt(s, 10) : NaN;
    if (!Number.isSafeInteger(d)) fail(`malformed shape (${show(shapeText, 200)}) in header`);
    return d;
  });
  const m = /^([<>|=])([a-z])(\d+)$/.exec(descr!);
  const dtype = m ? `${m[2]}${m[3]}` as NpyDType : null;
  if (!m || !dtype || !Object.hasOwn(ITEM_SIZE, dtype)) {
    fail(
      `unsupported dtype '${
        descr!.slice(0, 40)
      }' (supported: u1, i1, b1, u2, i2, u4, i4, u8, i8, f4, f8, little-endian)`,
    );
  }
  const size = ITEM_SIZE[dtype!];
  // '|' (no byte order) only makes sense for one-byte types; '=' is native order, which for a
  // file is ambiguous, so only explicit little-endian is accepted for wider types.
  if (size > 1 && m![1] !== "<") fail(`unsupported byte order in dtype '${descr}' (only little-endian '<')`);
  // A product too large to be exact is far over both the limit and the file's size: refused either way.
  const count = shape.reduce((a, b) => a * b, 1);
  const need = count * size;
  try {
    checkLimit(limits, "maxBytes", need, `an array of shape (${shape.join(", ")}) of ${descr}`);
  } catch (e) {
    fail((e as Error).message, e);
  }
  if (bytes.length - dataStart < need) {
    fail(
      `truncated data: shape (${shape.join(", ")}) of ${descr} needs ${need} bytes, file has ${
        bytes.length - dataStart
      } after the header`,
    );
  }
  // Copy so the typed array is aligned whatever the header length was.
  const buf = bytes.slice(dataStart, dataStart + need).buffer;
  const data: NpyData = dtype === "u1" || dtype === "b1"
    ? new Uint8Array(buf)
    : dtype === "i1"
    ? new Int8Array(buf)
    : dtype === "u2"
    ? new Uint16Array(buf)
    : dtype === "i2"
    ? new Int16Array(buf)
    : dtype === "u4"
    ? new Uint32Array(buf)
    : dtype === "i4"
    ? new Int32Array(buf)
    : dtype === "i8"
    ? new BigInt64Array(buf)
    : dtype === "u8"
    ? new BigUint64Array(buf)
    : dtype === "f4"
    ? new Float32Array(buf)
    : new Float64Array(buf);
  return { dtype: dtype!, shape, data };
}

/**
 * An H×W class map from a 2-D array (or H×W×1): every value must be an integer in [0, 255]
 * (floats must hold whole numbers), else an NpyError naming the file, the value and its position.
 * (ddpm-segmentation casts with astype('uint8'), which would silently wrap; here that is an error.)
 */
export function npyToLabel(arr: NpyArray, name = "<npy>"): { width: number; height: number; data: Uint8Array } {
  const s = arr.shape;
  if (!(s.length === 2 || (s.length === 3 && s[2] === 1))) {
    throw new NpyError(name, `expected a 2-D (H, W) class map, got shape (${s.join(", ")})`);
  }
  const [height, width] = s;
  if (width < 1 || height < 1) throw new NpyError(name, `empty class map of shape (${s.join(", ")})`);
  const n = width * height, out = new Uint8Array(n);
  const src = arr.data;
  for (let i = 0; i < n; i++) {
    const v = Number(src[i]);
    if (!(Number.isInteger(v) && v >= 0 && v <= 255)) {
      throw new NpyError(
        name,
        `class map value ${src[i]} at row ${Math.floor(i / width)}, column ${i % width} is not an integer in 0..255`,
      );
    }
    out[i] = v;
  }
  return { width, height, data: out };
}
