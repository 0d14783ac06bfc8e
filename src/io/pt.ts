// PyTorch's own checkpoints: what torch.save writes (a zip archive holding data.pkl and one entry
// per storage), read without running Python or libtorch's unpickler. libtorch's torch::pickle_load
// turns an OrderedDict, which every state dict is, into None; and a pickle can run code. The
// restricted unpickler here rebuilds dicts and tensors only, and anything else it meets becomes a
// skipped entry. Nested dicts ({"model": state_dict, ...}) come back with dotted keys.
import { fromRawBytes } from "../create.ts";
import type { Device } from "../device.ts";
import { BYTES, type DType } from "../dtype.ts";
import type { Tensor } from "../tensor.ts";
import { CheckpointError, disposeAll, LoadedTensors, type SkippedEntry } from "./common.ts";
import { PyGlobal, PyObject, unpickle } from "./pickle.ts";
import { ZipReader } from "./zip.ts";

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
      throw new Error(`unknown persistent id ${String(Array.isArray(pid) ? pid[0] : pid)}`);
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
  if (v instanceof PyObject) return `an object of type ${v.type}`;
  if (v instanceof PyGlobal) return `a reference to ${v.qualified}`;
  if (Array.isArray(v)) return Object.isFrozen(v) ? "a tuple" : "a list";
  if (v instanceof Uint8Array) return "bytes";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

/** Collects tensors by dotted name; everything else is reported. */
function flatten(v: unknown, name: string, tensors: [string, TensorSpec][], skipped: SkippedEntry[]): void {
  if (v instanceof TensorSpec) tensors.push([name, v]);
  else if (v instanceof Map) {
    for (const [k, x] of v) {
      if (typeof k !== "string" && typeof k !== "number" && typeof k !== "bigint") {
        skipped.push({ name: `${name}[?]`, reason: `a dict key that is ${describe(k)}` });
      } else flatten(x, name ? `${name}.${k}` : String(k), tensors, skipped);
    }
  } else skipped.push({ name, reason: `not a tensor but ${describe(v)}` });
}

/** The tensor's elements, contiguous: a slice of the storage, or gathered when strided. */
function tensorBytes(spec: TensorSpec, storage: Uint8Array, itemSize: number): Uint8Array {
  const { size, stride, offset } = spec;
  const numel = size.reduce((a, b) => a * b, 1);
  const last = size.reduce((at, d, i) => at + (d - 1) * stride[i], offset);
  if (storage.length < spec.storage.numel * itemSize) {
    throw new Error(`its storage entry has ${storage.length} bytes, ${spec.storage.numel} elements need more`);
  }
  if (last >= spec.storage.numel) {
    throw new Error(`its view reaches element ${last} of a storage of ${spec.storage.numel}`);
  }
  let contiguous = true;
  for (let i = size.length - 1, expect = 1; i >= 0; expect *= size[i], i--) {
    if (size[i] !== 1 && stride[i] !== expect) contiguous = false;
  }
  if (contiguous) return storage.subarray(offset * itemSize, (offset + numel) * itemSize);
  // A non-contiguous saved view (a transposed weight): copy element by element in row-major order.
  const out = new Uint8Array(numel * itemSize);
  const index = new Array(size.length).fill(0);
  for (let k = 0; k < numel; k++) {
    let at = offset;
    for (let i = 0; i < size.length; i++) at += index[i] * stride[i];
    out.set(storage.subarray(at * itemSize, (at + 1) * itemSize), k * itemSize);
    for (let i = size.length - 1; i >= 0 && ++index[i] === size[i]; i--) index[i] = 0;
  }
  return out;
}

/**
 * Loads the tensors of a `.pt` file written by `torch.save` (a state dict, possibly nested) onto
 * `device` (the default device when omitted), whatever device they were saved from. Entries that
 * are not tensors (an epoch counter, hyperparameters) and tensors of dtypes mdm lacks are listed
 * in `skipped`. A file that is not such a checkpoint is rejected with a CheckpointError naming it.
 */
export function loadPt(path: string, opts: { device?: Device } = {}): LoadedTensors {
  const bad = (problem: string, cause?: unknown): never => {
    throw new CheckpointError(path, problem, cause === undefined ? undefined : { cause });
  };
  let file: Deno.FsFile | undefined;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (e) {
    bad(`cannot open: ${(e as Error).message}`, e);
  }
  using f = file!;
  const size = f.statSync().size;
  if (size === 0) bad("the file is empty");
  const magic = new Uint8Array(4);
  f.readSync(magic);
  // Files saved with _use_new_zipfile_serialization=False (before PyTorch 1.6) are a bare pickle
  // stream followed by raw storages; saying so beats a parse error.
  if (!isZip(magic)) {
    bad("not a torch.save checkpoint (no zip signature; the pre-1.6 format is not supported, re-save with torch.save)");
  }

  let zip: ZipReader;
  let prefix = "";
  let root: unknown;
  try {
    zip = new ZipReader(f, size);
    // Entries live under one folder named by the saver (archive/ in recent versions).
    const pkl = [...zip.entries.keys()].find((k) => /^[^/]+\/data\.pkl$/.test(k));
    if (pkl === undefined) throw new Error("the archive has no <name>/data.pkl: not written by torch.save");
    prefix = pkl.slice(0, -"data.pkl".length);
    if (zip.entries.has(`${prefix}byteorder`)) {
      const order = new TextDecoder().decode(zip.read(`${prefix}byteorder`));
      if (order !== "little") throw new Error(`the storages are ${order}-endian`);
    }
    root = unpickle(zip.read(pkl), hooks);
  } catch (e) {
    return bad(`cannot read the checkpoint: ${(e as Error).message}`, e);
  }
  if (!(root instanceof Map)) bad(`the checkpoint holds ${describe(root)}, not a dict of tensors (a state dict)`);

  const specs: [string, TensorSpec][] = [];
  const skipped: SkippedEntry[] = [];
  flatten(root, "", specs, skipped);
  const made: [string, Tensor][] = [];
  let current = "";
  try {
    // Consecutive tensors often share a storage (tied or sliced weights): read each one once.
    let cachedKey: string | null = null;
    let cached = new Uint8Array(0);
    for (const [name, spec] of specs) {
      current = name;
      const dtype = spec.storage.dtype;
      if (dtype === undefined) {
        skipped.push({ name, reason: `a tensor of ${spec.storage.type}, a dtype mdm does not support` });
        continue;
      }
      // An empty tensor needs no bytes, and some writers store no entry for an empty storage.
      const empty = spec.size.includes(0);
      if (!empty && cachedKey !== spec.storage.key) {
        cached = zip!.read(`${prefix}data/${spec.storage.key}`);
        cachedKey = spec.storage.key;
      }
      const bytes = empty ? new Uint8Array(0) : tensorBytes(spec, cached, BYTES[dtype]);
      made.push([name, fromRawBytes(bytes as Uint8Array<ArrayBuffer>, dtype, spec.size, opts.device)]);
    }
  } catch (e) {
    disposeAll(made.map(([, t]) => t));
    bad(`cannot read tensor ${JSON.stringify(current)}: ${(e as Error).message}`, e);
  }
  return new LoadedTensors(made, {}, skipped);
}
