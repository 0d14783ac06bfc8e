// The safetensors format, written byte for byte as the `safetensors` library (Rust core, Python
// bindings) writes it and read with the checks it makes, so files move to and from PyTorch.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape,
// data_offsets: [begin, end]}} and an optional "__metadata__" map of strings), then the data.
// Offsets count from the end of the header and the tensors tile the data without gaps.
//
// Reading and writing are synchronous on purpose: tensors made inside `tidy` must be made while the
// scope is open, and an await in between would let the scope close first.
import { fromRawBytes } from "../create.ts";
import type { Device } from "../device.ts";
import { BYTES, type DType } from "../dtype.ts";
import type { Tensor } from "../tensor.ts";
import { writeFileAtomic } from "./atomic.ts";
import { CheckpointError, disposeAll, LoadedTensors } from "./common.ts";
import { checkLimit, type Limits, MAX_DIMS, resolveLimits, show } from "./limits.ts";
import { rawBytes } from "./raw.ts";
import { ReadableFile } from "./fs.ts";

const CODE: Record<DType, string> = {
  float32: "F32",
  float64: "F64",
  float16: "F16",
  bfloat16: "BF16",
  int64: "I64",
  int32: "I32",
  uint8: "U8",
  bool: "BOOL",
};
// A Map, not an object: a header's dtype may be any string, "constructor" and "__proto__" included.
const DTYPE_OF = new Map<string, DType>(Object.entries(CODE).map(([d, c]) => [c, d as DType]));

// Position in the library's Dtype enum, which lists types by increasing alignment. The writer puts
// the most aligned types first (then orders by name), so every tensor's data is aligned.
const RANK: Record<string, number> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  F8_E5M2: 3,
  F8_E4M3: 4,
  I16: 5,
  U16: 6,
  F16: 7,
  BF16: 8,
  I32: 9,
  U32: 10,
  F32: 11,
  F64: 12,
  I64: 13,
  U64: 14,
};

/** The library's limit: a longer header is taken as a corrupt or hostile file. */
const MAX_HEADER = 100_000_000;
const METADATA = "__metadata__";

const utf8 = new TextEncoder();

// Rust compares strings byte by byte (UTF-8); JavaScript's `<` compares UTF-16 code units, which
// orders some characters above U+FFFF differently.
function compareUtf8(a: string, b: string): number {
  const x = utf8.encode(a), y = utf8.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

interface Entry {
  name: string;
  tensor: Tensor;
  code: string;
  shape: number[];
  size: number;
}

/** The header bytes, padded with spaces to a multiple of 8 as the library does. */
function encodeHeader(entries: readonly Entry[], metadata: Record<string, string> | undefined): Uint8Array {
  // JSON.stringify escapes strings as serde_json does (only ", \ and control characters, as
  // lowercase \u00xx). Objects are joined by hand: a JavaScript object would move integer-like keys
  // to the front.
  const object = (pairs: [string, string][]) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
  const fields: [string, string][] = [];
  // serde_json writes "__metadata__" first. Its keys come from a Rust HashMap (no fixed order);
  // sorting them keeps mdm's output deterministic.
  if (metadata !== undefined) {
    const sorted = Object.entries(metadata).sort(([a], [b]) => compareUtf8(a, b));
    fields.push([METADATA, object(sorted.map(([k, v]) => [k, JSON.stringify(v)]))]);
  }
  let offset = 0;
  for (const e of entries) {
    fields.push([e.name, JSON.stringify({ dtype: e.code, shape: e.shape, data_offsets: [offset, offset + e.size] })]);
    offset += e.size;
  }
  const json = utf8.encode(object(fields));
  const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
  padded.set(json);
  return padded;
}

function checkedEntries(tensors: Map<string, Tensor> | Record<string, Tensor>): Entry[] {
  const pairs = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const entries = pairs.map(([name, tensor]): Entry => {
    if (name === METADATA) throw new TypeError(`saveSafetensors: "${METADATA}" is reserved, not a tensor name`);
    if (!name.isWellFormed()) {
      throw new TypeError(`saveSafetensors: tensor name ${JSON.stringify(name)} is not valid UTF-16`);
    }
    const dtype = tensor.dtype;
    return { name, tensor, code: CODE[dtype], shape: [...tensor.shape], size: tensor.numel * BYTES[dtype] };
  });
  return entries.sort((a, b) => RANK[b.code] - RANK[a.code] || compareUtf8(a.name, b.name));
}

function checkedMetadata(metadata: Record<string, string> | undefined): Record<string, string> | undefined {
  if (metadata === undefined) return undefined;
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new TypeError(`saveSafetensors: metadata ${k} must be a string, got ${typeof v}`);
  }
  return metadata;
}

/**
 * Writes tensors (any device, any mdm dtype) to a safetensors file the `safetensors` library reads
 * (and would have written the same bytes for). The file is replaced atomically: a crash or an
 * error mid-way leaves the previous file, if any, as it was.
 */
export function saveSafetensors(
  path: string,
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): void {
  writeFileAtomic(path, (file) => {
    const entries = checkedEntries(tensors);
    const header = encodeHeader(entries, checkedMetadata(metadata));
    const length = new Uint8Array(8);
    new DataView(length.buffer).setBigUint64(0, BigInt(header.byteLength), true);
    file.write(length);
    file.write(header);
    // One tensor's bytes at a time, so a large model needs no second copy of itself in memory.
    for (const e of entries) file.write(rawBytes(e.tensor));
  });
}

/** A tensor's description in the header, validated. */
interface Described {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

const isCount = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;

/** Validates one header entry; returns the problem, or the description. */
function describe(name: string, info: unknown): Described | string {
  const what = `tensor ${show(name)}`;
  if (info === null || typeof info !== "object" || Array.isArray(info)) return `${what}: entry is not an object`;
  const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
  const dt = typeof dtype === "string" ? DTYPE_OF.get(dtype) : undefined;
  if (dt === undefined) {
    const known = [...DTYPE_OF.keys()].join(", ");
    return `${what}: dtype ${show(dtype)} is not one mdm reads (${known})`;
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    return `${what}: shape ${show(shape)} is not a list of non-negative integers`;
  }
  if (shape.length > MAX_DIMS) return `${what}: shape of ${shape.length} dimensions (at most ${MAX_DIMS})`;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    return `${what}: data_offsets ${show(offsets)} is not a pair of non-negative integers`;
  }
  const [begin, end] = offsets as number[];
  if (end < begin) return `${what}: data_offsets [${begin}, ${end}] end before they begin`;
  // BigInt: a hostile shape could overflow a double's exact range and seem to match.
  const numel = shape.reduce((n: bigint, d: number) => n * BigInt(d), 1n);
  const bytes = numel * BigInt(BYTES[dt]);
  if (bytes !== BigInt(end - begin)) {
    return `${what}: ${dtype} of shape [${
      shape.join(", ")
    }] needs ${bytes} bytes, data_offsets [${begin}, ${end}] hold ${end - begin}`;
  }
  return { name, dtype: dt, shape, begin, end };
}

interface Header {
  /** Bytes before the data: the length field and the header. */
  dataStart: number;
  tensors: Described[];
  metadata: Record<string, string>;
}

/** Parses and validates the header against the file's size; throws naming the first problem. */
function readHeader(path: string, file: ReadableFile, fileSize: number, limits: Required<Limits>): Header {
  const bad = (problem: string, cause?: unknown): never => {
    throw new CheckpointError(path, `not a valid safetensors file: ${problem}`, cause ? { cause } : undefined);
  };
  if (fileSize < 8) bad(`the file has ${fileSize} bytes, fewer than the 8 of the header length`);
  const prefix = readExactly(file, 0, 8);
  const n = new DataView(prefix.buffer).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER)) bad(`header length ${n} is absurd (the limit is ${MAX_HEADER} bytes)`);
  if (8 + Number(n) > fileSize) bad(`header length ${n} runs past the end of the file (${fileSize} bytes)`);
  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(readExactly(file, 8, Number(n)));
  } catch {
    bad("the header is not valid UTF-8");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    bad(`the header is not valid JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) bad("the header is not a JSON object");

  const tensors: Described[] = [];
  let metadata: Record<string, string> = {};
  const count = Object.keys(parsed as object).length;
  try {
    checkLimit(limits, "maxEntries", count, `a header of ${count} entries`);
  } catch (e) {
    bad((e as Error).message, e);
  }
  for (const [name, info] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === METADATA) {
      if (info === null) continue;
      const ok = typeof info === "object" && !Array.isArray(info) &&
        Object.values(info).every((v) => typeof v === "string");
      if (!ok) bad(`"${METADATA}" is not a map of strings`);
      metadata = info as Record<string, string>;
      continue;
    }
    const d = describe(name, info);
    if (typeof d === "string") bad(d);
    else tensors.push(d);
  }

  // Sorted by position, the tensors must tile the data section exactly: each starts where the
  // previous one ended, and the last ends at the end of the file.
  const byPosition = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let previous = "the start of the data";
  for (const t of byPosition) {
    const span = `tensor ${show(t.name)} at [${t.begin}, ${t.end}]`;
    if (t.begin < at) bad(`${span} overlaps ${previous}, which ends at ${at}`);
    if (t.begin > at) bad(`${span} leaves a gap after ${previous}, which ends at ${at}`);
    at = t.end;
    previous = `tensor ${show(t.name)}`;
  }
  const dataStart = 8 + Number(n);
  const available = fileSize - dataStart;
  if (at > available) bad(`truncated: the header describes ${at} bytes of data, the file holds ${available}`);
  if (at < available) bad(`the header describes ${at} bytes of data, the file holds ${available} (trailing bytes)`);
  return { dataStart, tensors, metadata };
}

function readExactly(file: ReadableFile, position: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const got = file.readAt(out, position);
  if (got < length) throw new Error(`unexpected end of file after ${position + got} bytes`);
  return out;
}

/**
 * Reads a safetensors file into tensors on `device` (the default device when omitted), in the
 * order of their data. The header is checked in full before any tensor is made; a file that breaks
 * the format is rejected with a CheckpointError naming the file and the problem. Every tensor's bytes
 * lie in the file, so memory is bounded by its size; the header (at most 100 MB, the library's own
 * limit) may list at most `opts.maxEntries` entries (default 1 000 000).
 */
export function loadSafetensors(path: string, opts: { device?: Device } & Limits = {}): LoadedTensors {
  const limits = resolveLimits(opts);
  let file: ReadableFile;
  try {
    file = new ReadableFile(path);
  } catch (e) {
    throw new CheckpointError(path, `cannot open: ${(e as Error).message}`, { cause: e });
  }
  using _ = file;
  const header = readHeader(path, file, file.size, limits);
  const made: [string, Tensor][] = [];
  let current = "";
  try {
    for (const t of header.tensors.sort((a, b) => a.begin - b.begin)) {
      current = t.name;
      const bytes = readExactly(file, header.dataStart + t.begin, t.end - t.begin);
      made.push([t.name, fromRawBytes(bytes, t.dtype, t.shape, opts.device)]);
    }
  } catch (e) {
    disposeAll(made.map(([, t]) => t));
    throw new CheckpointError(path, `cannot read tensor ${show(current)}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return new LoadedTensors(made, header.metadata);
}
