// PyTorch's own checkpoints: what torch.save writes (a zip archive holding data.pkl and one entry
// per storage), read without running Python or libtorch's unpickler. libtorch's torch::pickle_load
// turns an OrderedDict, which every state dict is, into None; and a pickle can run code. The
// restricted unpickler here rebuilds dicts and tensors only, and anything else it meets becomes a
// skipped entry. Nested dicts ({"model": state_dict, ...}) come back with dotted keys.
//
// A hostile file can describe more than it holds: dicts nested 200,000 deep or containing
// themselves, sub-dicts shared so that the number of paths doubles at every level, a view with
// stride 0 that repeats one stored element a billion times. The walk of the dict tree is
// iterative and bounded (`maxDepth`, `maxEntries`, cycles refused), every view is checked against
// its storage, and the tensors made may exceed the file's own size by at most `maxBytes`.
import { fromRawBytes } from "../create.ts";
import type { Device } from "../device.ts";
import { BYTES, type DType } from "../dtype.ts";
import type { Tensor } from "../tensor.ts";
import { CheckpointError, disposeAll, LoadedTensors, type SkippedEntry } from "./common.ts";
import { checkLimit, LimitError, type Limits, MAX_DIMS, resolveLimits, show } from "./limits.ts";
import { PyGlobal, PyObject, unpickle } from "./pickle.ts";
import { ZipReader } from "./zip.ts";
import { ReadableFile } from "./fs.ts";

/** torch.save (since PyTorch 1.6) writes a zip archive, which starts with a local file header. */
export function isZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

// The legacy storage classes torch.save names for each dtype (torch 2 still writes these names).
const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: "float32",
  DoubleStorage: "float64",
  HalfStorage: "float16",
  BFloat16Storage: "bfloat16",
  LongStorage: "int64",
  IntStorage: "int32",
  ByteStorage: "uint8",
  BoolStorage: "bool",
};

/** A storage the pickle refers to by key; its bytes are the archive entry `data/<key>`. */
class StorageRef {
  constructor(readonly key: string, readonly type: string, readonly dtype: DType | undefined, readonly numel: number) {}
}

/** A tensor as torch._utils._rebuild_tensor_v2 would make it: a strided view of a storage. */
class TensorSpec {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: readonly number[],
    readonly stride: readonly number[],
  ) {}
}

const isCount = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
const isCounts = (x: unknown): x is number[] => Array.isArray(x) && x.every(isCount);

const hooks = {
  call(fn: PyGlobal, args: readonly unknown[]): unknown {
    switch (fn.qualified) {
      case "collections.OrderedDict":
        return new Map();
      case "torch._utils._rebuild_tensor":
      case "torch._utils._rebuild_tensor_v2": {
        const [storage, offset, size, stride] = args;
        if (!(storage instanceof StorageRef) || !isCount(offset) || !isCounts(size) || !isCounts(stride)) {
          throw new Error(`${fn.name}: malformed arguments`);
        }
        if (size.length !== stride.length) throw new Error(`${fn.name}: size and stride differ in length`);
        if (size.length > MAX_DIMS) throw new Error(`${fn.name}: ${size.length} dimensions (at most ${MAX_DIMS})`);
        return new TensorSpec(storage, offset, size, stride);
      }
      // nn.Parameter saved directly (a model's parameters rather than its state dict): its data.
      case "torch._utils._rebuild_parameter":
      case "torch._utils._rebuild_parameter_with_state":
        return args[0];
    }
    return undefined;
  },
  // torch.save's persistent ids: ("storage", storage class, key, location, element count).
  persistentLoad(pid: unknown): unknown {
    if (!Array.isArray(pid) || pid[0] !== "storage" || pid.length !== 5) {
      const kind = Array.isArray(pid) ? pid[0] : pid;
      throw new Error(`unknown persistent id ${typeof kind === "string" ? show(kind) : describe(kind)}`);
    }
    const [, type, key, , numel] = pid;
    if (!(type instanceof PyGlobal) || typeof key !== "string" || !isCount(numel)) {
      throw new Error("malformed storage reference");
    }
    return new StorageRef(key, type.name, STORAGE_DTYPES[type.name], numel);
  },
};

function describe(v: unknown): string {
  if (v === null) return "None";
  if (v instanceof TensorSpec) return "a single tensor";
  if (v instanceof PyObject) return `an object of type ${v.type.slice(0, 100)}`;
  if (v instanceof PyGlobal) return `a reference to ${v.qualified.slice(0, 100)}`;
  if (Array.isArray(v)) return Object.isFrozen(v) ? "a tuple" : "a list";
  if (v instanceof Uint8Array) return "bytes";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

/**
 * Collects the tensors of a dict tree by dotted name; everything else is reported as skipped.
 * Iterative, so depth costs no call stack; `maxDepth` bounds the nesting, `maxEntries` the entries
 * visited (a sub-dict reached by two paths is walked twice, as torch.load would give it twice),
 * `maxBytes` the characters of the names made, and a dict inside itself is an error.
 */
function flatten(
  root: Map<unknown, unknown>,
  limits: Required<Limits>,
  tensors: [string, TensorSpec][],
  skipped: SkippedEntry[],
): void {
  const path = new Set<Map<unknown, unknown>>([root]);
  const frames = [{ dict: root, entries: root.entries(), name: "" }];
  const names = new Set<string>();
  let visited = 0, chars = 0;
  while (frames.length > 0) {
    const frame = frames[frames.length - 1];
    const next = frame.entries.next();
    if (next.done) {
      path.delete(frame.dict);
      frames.pop();
      continue;
    }
    if (++visited > limits.maxEntries) {
      checkLimit(limits, "maxEntries", visited, "the entries of the checkpoint's dicts");
    }
    const [k, x] = next.value;
    if (typeof k !== "string" && typeof k !== "number" && typeof k !== "bigint") {
      skipped.push({ name: `${frame.name}[?]`, reason: `a dict key that is ${describe(k)}` });
      continue;
    }
    const name = frame.name ? `${frame.name}.${k}` : String(k);
    chars += name.length;
    if (chars > limits.maxBytes) checkLimit(limits, "maxBytes", chars, "the characters of the entries' names");
    if (x instanceof Map) {
      if (path.has(x)) throw new Error(`the dict at ${show(name)} contains itself`);
      if (frames.length + 1 > limits.maxDepth) {
        checkLimit(limits, "maxDepth", frames.length + 1, `dicts nested at ${show(name)}`);
      }
      path.add(x);
      frames.push({ dict: x, entries: x.entries(), name });
      continue;
    }
    // Keys with dots can clash with nested ones ({"a.b": x, "a": {"b": y}}); neither may win silently.
    if (names.has(name)) throw new Error(`two entries are named ${show(name)}`);
    names.add(name);
    if (x instanceof TensorSpec) tensors.push([name, x]);
    else skipped.push({ name, reason: `not a tensor but ${describe(x)}` });
  }
}

/** Elements in a view of `size`, or Infinity when that is not an exact number. */
function elementCount(size: readonly number[]): number {
  let n = 1;
  for (const d of size) n *= d;
  return Number.isSafeInteger(n) ? n : Infinity;
}

/**
 * The tensor's elements, contiguous: a slice of the storage, or gathered when strided. The view
 * (offset, sizes, strides) must lie inside the storage, and the storage inside its entry's bytes.
 */
function tensorBytes(spec: TensorSpec, storage: Uint8Array, itemSize: number): Uint8Array {
  const { size, stride, offset } = spec;
  const numel = elementCount(size);
  if (storage.length < spec.storage.numel * itemSize) {
    throw new Error(`its storage entry has ${storage.length} bytes, ${spec.storage.numel} elements need more`);
  }
  // The last element the view reaches, exactly (BigInt: sizes times strides can pass 2^53).
  let last = BigInt(offset);
  for (let i = 0; i < size.length; i++) last += BigInt(size[i] - 1) * BigInt(stride[i]);
  if (last >= BigInt(spec.storage.numel)) {
    throw new Error(`its view reaches element ${last} of a storage of ${spec.storage.numel}`);
  }
  let contiguous = true;
  for (let i = size.length - 1, expect = 1; i >= 0; expect *= size[i], i--) {
    if (size[i] !== 1 && stride[i] !== expect) contiguous = false;
  }
  if (contiguous) return storage.subarray(offset * itemSize, (offset + numel) * itemSize);
  // A non-contiguous saved view (a transposed weight, an expanded one): gathered in row-major
  // order a word at a time (storage entries start at offset 0, so words are aligned).
  const word = itemSize === 1 ? 1 : itemSize === 2 ? 2 : 4, per = itemSize / word;
  const Words = word === 1 ? Uint8Array : word === 2 ? Uint16Array : Uint32Array;
  const src = new Words(storage.buffer as ArrayBuffer, storage.byteOffset, Math.floor(storage.byteLength / word));
  const out = new Uint8Array(numel * itemSize);
  const dst = new Words(out.buffer);
  const ndim = size.length, inner = ndim - 1;
  const index = new Array<number>(ndim).fill(0);
  let at = offset, k = 0;
  while (k < dst.length) {
    // One run along the last dimension, then carry into the others.
    const n = size[inner], step = stride[inner];
    for (let j = 0, a = at; j < n; j++, a += step) {
      for (let w = 0; w < per; w++) dst[k++] = src[a * per + w];
    }
    let i = inner - 1;
    for (; i >= 0 && ++index[i] === size[i]; i--) {
      at -= (size[i] - 1) * stride[i];
      index[i] = 0;
    }
    if (i < 0) break;
    at += stride[i];
  }
  return out;
}

/**
 * Loads the tensors of a `.pt` file written by `torch.save` (a state dict, possibly nested) onto
 * `device` (the default device when omitted), whatever device they were saved from. Entries that
 * are not tensors (an epoch counter, hyperparameters) and tensors of dtypes mdm lacks are listed
 * in `skipped`. A file that is not such a checkpoint is rejected with a CheckpointError naming it
 * (its cause a LimitError when a limit was exceeded). Limits (see Limits): `maxDepth` (dict
 * nesting, default 1000), `maxEntries` (pickle values, dict entries and zip entries, default
 * 1 000 000), `maxIntegerDigits` (pickle integers, default 4300) and `maxBytes` (how far the
 * tensors made may exceed the file's own size, through views that repeat or share stored
 * elements, default 512 MiB).
 */
export function loadPt(path: string, opts: { device?: Device } & Limits = {}): LoadedTensors {
  const limits = resolveLimits(opts);
  const bad = (problem: string, cause?: unknown): never => {
    throw new CheckpointError(path, problem, cause === undefined ? undefined : { cause });
  };
  let file: ReadableFile | undefined;
  try {
    file = new ReadableFile(path);
  } catch (e) {
    bad(`cannot open: ${(e as Error).message}`, e);
  }
  using f = file!;
  const size = f.size;
  if (size === 0) bad("the file is empty");
  const magic = new Uint8Array(4);
  f.readAt(magic, 0);
  // Files saved with _use_new_zipfile_serialization=False (before PyTorch 1.6) are a bare pickle
  // stream followed by raw storages; saying so beats a parse error.
  if (!isZip(magic)) {
    bad("not a torch.save checkpoint (no zip signature; the pre-1.6 format is not supported, re-save with torch.save)");
  }

  let zip: ZipReader;
  let prefix = "";
  const specs: [string, TensorSpec][] = [];
  const skipped: SkippedEntry[] = [];
  try {
    zip = new ZipReader(f, size, limits);
    // Entries live under one folder named by the saver (archive/ in recent versions).
    const pkl = [...zip.entries.keys()].find((k) => /^[^/]+\/data\.pkl$/.test(k));
    if (pkl === undefined) throw new Error("the archive has no <name>/data.pkl: not written by torch.save");
    prefix = pkl.slice(0, -"data.pkl".length);
    if (zip.entries.has(`${prefix}byteorder`)) {
      const order = new TextDecoder().decode(zip.read(`${prefix}byteorder`));
      if (order !== "little") throw new Error(`the storages are ${show(order)}-endian`);
    }
    const root = unpickle(zip.read(pkl), hooks, limits);
    if (!(root instanceof Map)) {
      return bad(`the checkpoint holds ${describe(root)}, not a dict of tensors (a state dict)`);
    }
    flatten(root, limits, specs, skipped);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    return bad(`cannot read the checkpoint: ${(e as Error).message}`, e);
  }

  // What to make, in the file's order; tensors of dtypes mdm lacks are reported instead.
  const wanted: { name: string; spec: TensorSpec; dtype: DType }[] = [];
  let total = 0;
  for (const [name, spec] of specs) {
    const dtype = spec.storage.dtype;
    if (dtype === undefined) {
      skipped.push({ name, reason: `a tensor of ${spec.storage.type}, a dtype mdm does not support` });
      continue;
    }
    total += elementCount(spec.size) * BYTES[dtype];
    if (total > size + limits.maxBytes) {
      const what = `tensor ${show(name)} of shape [${spec.size.join(", ")}] (stride [${spec.stride.join(", ")}]) ` +
        `brings the tensors made to ${total} bytes, ${total - size} more than the file's ${size}, which`;
      const e = new LimitError("maxBytes", total - size, limits.maxBytes, what);
      bad(`cannot read tensor ${show(name)}: ${e.message}`, e);
    }
    wanted.push({ name, spec, dtype });
  }

  // Grouped by storage, so each storage entry is read once however its tensors are ordered.
  const order = wanted.map((_, i) => i).sort((a, b) => {
    const ka = wanted[a].spec.storage.key, kb = wanted[b].spec.storage.key;
    return ka < kb ? -1 : ka > kb ? 1 : a - b;
  });
  const made = new Array<Tensor | undefined>(wanted.length);
  let current = "";
  try {
    let cachedKey: string | null = null;
    let cached = new Uint8Array(0);
    for (const i of order) {
      const { name, spec, dtype } = wanted[i];
      current = name;
      // An empty tensor needs no bytes, and some writers store no entry for an empty storage.
      const empty = spec.size.includes(0);
      if (!empty && cachedKey !== spec.storage.key) {
        cached = zip!.read(`${prefix}data/${spec.storage.key}`);
        cachedKey = spec.storage.key;
      }
      const bytes = empty ? new Uint8Array(0) : tensorBytes(spec, cached, BYTES[dtype]);
      made[i] = fromRawBytes(bytes as Uint8Array<ArrayBuffer>, dtype, spec.size, opts.device);
    }
  } catch (e) {
    disposeAll(made.filter((t) => t !== undefined));
    bad(`cannot read tensor ${show(current)}: ${(e as Error).message}`, e);
  }
  return new LoadedTensors(wanted.map(({ name }, i) => [name, made[i]!]), {}, skipped);
}
