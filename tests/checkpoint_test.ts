// Checkpoints to and from PyTorch: safetensors written and read byte-exactly in both directions,
// torch.save'd state dicts, rejection of corrupt files, atomic saves, and loading into models.
// The Python side parses and writes the safetensors format by hand (the `safetensors` package is
// not installed), so these tests check the format itself, not one implementation against itself.
import assert from "node:assert/strict";
import {
  CheckpointError,
  DisposedError,
  liveTensors,
  loadCheckpoint,
  loadModelWeights,
  loadPt,
  loadSafetensors,
  manualSeed,
  randn,
  saveSafetensors,
  type Tensor,
  tensor,
  zeros,
} from "../mod.ts";
import { rawBytes } from "../src/io/raw.ts";
import { BatchNorm1d, Conv2d, GroupNorm, Linear } from "../src/nn/layers.ts";
import { Module, rootBuilder, StateDictError } from "../src/nn/module.ts";
import { UNet } from "../src/models/unet/unet.ts";
import { assertClose, type RefValue, torchRef } from "./helpers/torch_ref.ts";
import { LimitError, type Limits } from "../src/io/limits.ts";
import { unpickle } from "../src/io/pickle.ts";
import { f32Bytes, Pickler, ptZip, safetensorsFile } from "./helpers/fuzz_files.ts";

const EXACT = { rtol: 0, atol: 0 };

/** Runs `fn` with a fresh temporary folder, removed afterwards whatever happens. */
async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "mdm_checkpoint_" });
  try {
    await fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Same dtype, same shape, same bytes (so NaN payloads, -0 and half-precision bits included). */
function assertSameTensor(actual: Tensor | undefined, expected: Tensor, what: string): void {
  assert.ok(actual, `${what}: missing`);
  assert.equal(actual.dtype, expected.dtype, `${what}: dtype`);
  assert.deepEqual([...actual.shape], [...expected.shape], `${what}: shape`);
  assert.deepEqual(rawBytes(actual), rawBytes(expected), `${what}: bytes`);
}

/** Every mdm dtype, with the values most likely to be mangled, plus scalars and empty tensors. */
function samples(): Record<string, Tensor> {
  return {
    f32: tensor(new Float32Array([0, -0, 1.5, -2.25, Infinity, -Infinity, NaN, 1e-45, 3.4e38]), { shape: [3, 3] }),
    f64: tensor(new Float64Array([Math.PI, -0, Number.MIN_VALUE, Number.MAX_VALUE, NaN, -Infinity]), {
      shape: [2, 3],
    }),
    // 6e-8 is a float16 subnormal, 65504 its largest finite value.
    f16: tensor(new Float32Array([0, -0, 1, 65504, -65504, 6e-8, Infinity, NaN, 0.1, -3.5]), {
      dtype: "float16",
      shape: [2, 5],
    }),
    bf16: tensor(new Float32Array([0, -0, 1, 3e38, 1e-40, -Infinity, NaN, 0.1]), {
      dtype: "bfloat16",
      shape: [2, 2, 2],
    }),
    i64: tensor(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n, 123456789012345n])),
    i32: tensor(new Int32Array([-2147483648, 2147483647, 0, -7]), { shape: [2, 2] }),
    u8: tensor(new Uint8Array([0, 1, 127, 128, 255])),
    bool: tensor([[true, false], [false, true]]),
    scalar: tensor(new Float32Array([3.5]), { shape: [] }),
    scalar_i64: tensor(new BigInt64Array([7n]), { shape: [] }),
    empty: zeros([0, 3]),
    empty_bf16: zeros([2, 0, 4], { dtype: "bfloat16" }),
  };
}

// The order the safetensors library writes them in: by dtype, most aligned first (I64, F64, F32,
// I32, BF16, F16, U8, BOOL as its Dtype enum ranks them), then by name.
const SAMPLE_ORDER = [
  "i64",
  "scalar_i64",
  "f64",
  "empty",
  "f32",
  "scalar",
  "i32",
  "bf16",
  "empty_bf16",
  "f16",
  "u8",
  "bool",
];

const py = (s: string) => JSON.stringify(s);

// Python: reads a safetensors file per the format's definition and checks its layout rules.
const PY_READER = `
import struct, json
DT = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
      "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}
def read_safetensors(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    n, = struct.unpack("<Q", raw[:8])
    text = raw[8:8 + n]
    header = json.loads(text)
    meta = header.pop("__metadata__", None)
    data = raw[8 + n:]
    out, end = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, e = info["data_offsets"]
        assert b == end, f"{name} starts at {b}, not {end}"
        end = e
        chunk = bytearray(data[b:e])
        dt = DT[info["dtype"]]
        t = torch.frombuffer(chunk, dtype=dt) if chunk else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"])
    assert end == len(data), "data not covered exactly"
    # The library pads the header with spaces to a multiple of 8 and writes compact JSON.
    compact = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False).encode()
    layout = {"aligned": n % 8 == 0, "compact": text.rstrip(b" ") == compact}
    return out, meta, list(header.keys()), layout
`;

Deno.test("safetensors: every dtype round-trips exactly, scalars and empty tensors included", () =>
  withDir((dir) => {
    const path = `${dir}/all.safetensors`;
    const src = samples();
    const metadata = { format: "pt", note: 'ünïcode "quoted"\n\ttabbed' };
    saveSafetensors(path, src, metadata);
    using loaded = loadSafetensors(path);
    assert.deepEqual([...loaded.keys()], SAMPLE_ORDER, "tensors come back in data order");
    for (const [name, t] of Object.entries(src)) assertSameTensor(loaded.get(name), t, name);
    assert.deepEqual({ ...loaded.metadata }, metadata);
    // A Map saves the same bytes as a record.
    const again = `${dir}/again.safetensors`;
    saveSafetensors(again, new Map(Object.entries(src)), metadata);
    assert.deepEqual(Deno.readFileSync(again), Deno.readFileSync(path));
  }));

Deno.test("safetensors: bytes identical to the library's own test vectors", () =>
  withDir((dir) => {
    const path = `${dir}/v.safetensors`;
    const le = (xs: number[]) => [...new Uint8Array(new Float32Array(xs).buffer)];
    const header = (json: string, n: number) => [n, 0, 0, 0, 0, 0, 0, 0, ...new TextEncoder().encode(json)];
    const values = [0, 1, 2, 3, 4, 5];
    // safetensors/src/tensor.rs: test_serialization, test_serialization_forced_alignement, test_empty.
    const cases: [Record<string, Tensor>, Record<string, string> | undefined, number[]][] = [
      [
        { "attn.0": tensor(new Float32Array(values), { shape: [1, 2, 3] }) },
        undefined,
        [...header('{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}', 64), ...le(values)],
      ],
      [
        { attn0: tensor(new Float32Array(values), { shape: [1, 1, 2, 3] }) },
        undefined,
        [
          ...header('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}', 72),
          ...Array(7).fill(32),
          ...le(values),
        ],
      ],
      [{}, undefined, [...header("{}", 8), ...Array(6).fill(32)]],
      [{}, { framework: "pt" }, [...header('{"__metadata__":{"framework":"pt"}}', 40), ...Array(5).fill(32)]],
    ];
    for (const [tensors, metadata, expected] of cases) {
      saveSafetensors(path, tensors, metadata);
      assert.deepEqual([...Deno.readFileSync(path)], expected);
    }
  }));

Deno.test("safetensors: a file mdm writes parses in Python by the format's rules", () =>
  withDir(async (dir) => {
    const path = `${dir}/from_mdm.safetensors`;
    const src = samples();
    const metadata = { format: "pt", "0": "integer-like key" };
    saveSafetensors(path, src, metadata);
    const ref = await torchRef({
      read: {
        code: `${PY_READER}
tensors, meta, order, layout = read_safetensors(${py(path)})
result = {"tensors": tensors, "meta_ok": meta == ${JSON.stringify(metadata)},
          "order_ok": order == ${JSON.stringify(SAMPLE_ORDER)}, **layout}`,
      },
    });
    const r = ref.read as Record<string, RefValue>;
    if ("error" in r) throw new Error(String(r.error));
    assert.deepEqual(
      { meta: r.meta_ok, order: r.order_ok, aligned: r.aligned, compact: r.compact },
      { meta: true, order: true, aligned: true, compact: true },
    );
    const got = r.tensors as Record<string, RefValue>;
    assert.deepEqual(Object.keys(got).sort(), Object.keys(src).sort());
    for (const [name, t] of Object.entries(src)) assertClose(t, got[name], EXACT, name);
  }));

Deno.test("safetensors: a file Python writes by hand loads in mdm", () =>
  withDir(async (dir) => {
    const path = `${dir}/from_python.safetensors`;
    // Data in reverse name order, header keys in name order, pretty JSON and no padding: readers
    // must accept any layout that tiles the data, not only the library's own.
    const ref = await torchRef({
      write: {
        seed: 3,
        code: `
import struct, json
NAMES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
         torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
ts = {"w": torch.randn(3, 4), "h": torch.randn(5).half(), "bf": torch.randn(2, 3).bfloat16(),
      "d": torch.randn(3).double(), "i": torch.arange(-3, 3), "i32": torch.tensor([1, -2], dtype=torch.int32),
      "u": torch.tensor([0, 200], dtype=torch.uint8), "b": torch.tensor([True, False, True]),
      "s": torch.tensor(2.5), "e": torch.zeros(0, 2)}
info, blobs, off = {}, [], 0
for k in sorted(ts, reverse=True):
    b = ts[k].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    info[k] = {"dtype": NAMES[ts[k].dtype], "shape": list(ts[k].shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
header = {"__metadata__": {"source": "python"}}
header.update({k: info[k] for k in sorted(info)})
text = json.dumps(header, indent=1).encode()
with open(${py(path)}, "wb") as fh:
    fh.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
result = ts`,
      },
    });
    const expected = ref.write as Record<string, RefValue>;
    if ("error" in expected) throw new Error(String(expected.error));
    using loaded = loadSafetensors(path);
    assert.deepEqual([...loaded.keys()].sort(), Object.keys(expected).sort());
    for (const [name, t] of loaded) assertClose(t, expected[name], EXACT, name);
    assert.deepEqual({ ...loaded.metadata }, { source: "python" });
  }));

// Python: a small model with every kind of state-dict entry (conv, norms, linear, BatchNorm
// running statistics and its int64 counter), trained a few steps so no buffer keeps its default.
const PY_MODEL = `
import torch.nn as nn
m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(4, 8), nn.BatchNorm2d(8), nn.Linear(4, 2))
m.train()
for _ in range(3):
    m[2](torch.randn(5, 8, 4, 4))
sd = m.state_dict()
`;

// Python: copies a zip archive's stored entries into one where every size and offset lives in zip64
// fields (0xFFFFFFFF in the 32-bit ones) and the end record is zip64 too.
const PY_ZIP64 = `
import struct, zipfile
def repack_zip64(src, dst):
    M = 0xFFFFFFFF
    with zipfile.ZipFile(src) as z:
        entries = [(i, z.read(i.filename)) for i in z.infolist()]
    out, central = bytearray(), bytearray()
    for info, data in entries:
        name, offset = info.filename.encode(), len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, 0, 0, 0, info.CRC, M, M, len(name), 20) + name
        out += struct.pack("<HHQQ", 1, 16, len(data), len(data)) + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 0, 0, 0, info.CRC, M, M,
                               len(name), 28, 0, 0, 0, 0, M) + name
        central += struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
    cd_offset = len(out)
    out += central
    record = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, len(entries), len(entries), len(central), cd_offset)
    out += struct.pack("<IIQI", 0x07064b50, 0, record, 1)
    out += struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 0xFFFF, 0xFFFF, M, M, 0)
    with open(dst, "wb") as fh:
        fh.write(out)
`;

Deno.test(".pt: torch.save'd state dicts load with their keys, dtypes and values", () =>
  withDir(async (dir) => {
    const plain = `${dir}/plain.pt`, nested = `${dir}/nested.pt`, views = `${dir}/views.pt`;
    const zip64 = `${dir}/zip64.pt`;
    const ref = await torchRef({
      sd: {
        seed: 5,
        code: `${PY_MODEL}
torch.save(sd, ${py(plain)})
torch.save({"model": sd, "epoch": 7, "name": "tiny", "i8": torch.ones(2, dtype=torch.int8)}, ${py(nested)})
result = dict(sd)`,
      },
      // The same archive re-packed with zip64 records everywhere, as torch.save writes files over
      // 4 GiB; torch.load accepting it shows the hand-made archive is valid.
      zip64: {
        code: `${PY_ZIP64}
repack_zip64(${py(plain)}, ${py(zip64)})
back = torch.load(${py(zip64)})
result = list(back) == list(torch.load(${py(plain)})) and all(torch.equal(back[k], v) for k, v in torch.load(${
          py(plain)
        }).items())`,
      },
      // Views into shared storages (an offset, a transpose) and half precision, which torch.save
      // stores as the whole storage plus offset and strides.
      views: {
        code: `
big = torch.arange(24.).reshape(4, 6)
d = {"big": big, "rows": big[1:3], "t": big.t(), "col_bf16": big.bfloat16()[:, 2], "half": big.half()[::2],
     "empty": torch.zeros(0, 3)}
torch.save(d, ${py(views)})
result = d`,
      },
    });
    const sd = ref.sd as Record<string, RefValue>;
    if ("error" in sd) throw new Error(String(sd.error));
    using a = loadPt(plain);
    assert.deepEqual([...a.keys()], Object.keys(sd), "keys in state-dict order");
    for (const [name, t] of a) assertClose(t, sd[name], EXACT, name);
    assert.equal(a.get("2.num_batches_tracked")?.dtype, "int64");
    assert.equal(a.get("2.num_batches_tracked")?.item(), 3);
    assert.deepEqual(a.skipped, []);

    using b = loadPt(nested);
    assert.deepEqual([...b.keys()], Object.keys(sd).map((k) => `model.${k}`));
    for (const [name, t] of b) assertClose(t, sd[name.slice("model.".length)], EXACT, name);
    assert.deepEqual(b.skipped.map((s) => s.name), ["epoch", "name", "i8"]);

    const v = ref.views as Record<string, RefValue>;
    if ("error" in v) throw new Error(String(v.error));
    using c = loadPt(views);
    assert.deepEqual([...c.keys()], Object.keys(v));
    for (const [name, t] of c) assertClose(t, v[name], EXACT, name);

    assert.equal(ref.zip64, true, `the zip64 archive is valid: ${JSON.stringify(ref.zip64)}`);
    using big = loadPt(zip64);
    assert.deepEqual([...big.keys()], Object.keys(sd));
    for (const [name, t] of big) assertSameTensor(t, a.get(name)!, name);

    // loadCheckpoint goes by content, not by file name.
    using byContent = loadCheckpoint(plain);
    assert.deepEqual([...byContent.keys()], Object.keys(sd));
    const misnamed = `${dir}/really_safetensors.pt`;
    saveSafetensors(misnamed, a);
    using st = loadCheckpoint(misnamed);
    for (const [name, t] of a) assertSameTensor(st.get(name), t, name);
  }));

/** A safetensors file from its parts; `n` overrides the header length field. */
function stFile(header: string | Uint8Array, data = new Uint8Array(0), n?: bigint): Uint8Array {
  const text = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

const f32Entry = (shape: number[], offsets: number[]) => JSON.stringify({ dtype: "F32", shape, data_offsets: offsets });

Deno.test("safetensors: corrupt and truncated files are rejected, naming the file and the problem", () =>
  withDir((dir) => {
    const valid = `${dir}/valid.safetensors`;
    saveSafetensors(valid, { a: zeros([2, 3]), b: zeros([4], { dtype: "int64" }) });
    const good = Deno.readFileSync(valid);
    const d16 = new Uint8Array(16);
    const cases: [string, Uint8Array, RegExp][] = [
      ["empty", new Uint8Array(0), /0 bytes, fewer than the 8/],
      ["short", new Uint8Array(5), /5 bytes, fewer than the 8/],
      ["absurd header length", stFile("{}", d16, 2n ** 40n), /header length 1099511627776 is absurd/],
      ["header past the end", stFile("{}", d16, 1000n), /header length 1000 runs past the end of the file/],
      ["invalid UTF-8", stFile(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), /not valid UTF-8/],
      ["invalid JSON", stFile('{"a": {"dtype": "F32",'), /not valid JSON/],
      ["JSON array", stFile("[1, 2]"), /not a JSON object/],
      ["JSON null", stFile("null"), /not a JSON object/],
      ["entry not an object", stFile('{"a": 3}'), /tensor "a": entry is not an object/],
      [
        "unknown dtype",
        stFile('{"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}', d16.subarray(0, 2)),
        /dtype "F8_E4M3" is not one mdm reads/,
      ],
      ["dtype missing", stFile('{"a": {"shape": [2], "data_offsets": [0, 8]}}', d16.subarray(0, 8)), /dtype undefined/],
      [
        "negative dim",
        stFile(`{"a": ${f32Entry([-1], [0, 4])}}`, d16.subarray(0, 4)),
        /shape \[-1\] is not a list of non-negative integers/,
      ],
      [
        "fractional dim",
        stFile(`{"a": ${f32Entry([1.5], [0, 4])}}`, d16.subarray(0, 4)),
        /shape \[1.5\] is not a list/,
      ],
      [
        "shape not a list",
        stFile('{"a": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}}', d16),
        /shape 4 is not a list/,
      ],
      [
        "string dim",
        stFile('{"a": {"dtype": "F32", "shape": ["4"], "data_offsets": [0, 16]}}', d16),
        /shape \["4"\] is not a list/,
      ],
      [
        "offsets not integers",
        stFile(`{"a": ${f32Entry([4], [0, 16.5])}}`, d16),
        /data_offsets \[0,16.5\] is not a pair/,
      ],
      ["offsets not a pair", stFile(`{"a": ${f32Entry([4], [16])}}`, d16), /data_offsets \[16\] is not a pair/],
      ["offsets reversed", stFile(`{"a": ${f32Entry([0], [16, 8])}}`, d16), /end before they begin/],
      [
        "offsets beyond the data",
        stFile(`{"a": ${f32Entry([8], [0, 32])}}`, d16),
        /truncated: the header describes 32 bytes of data, the file holds 16/,
      ],
      [
        "size mismatch",
        stFile(`{"a": ${f32Entry([3], [0, 16])}}`, d16),
        /F32 of shape \[3\] needs 12 bytes, data_offsets \[0, 16\] hold 16/,
      ],
      [
        "overlap",
        stFile(`{"a": ${f32Entry([2], [0, 8])}, "b": ${f32Entry([2], [4, 12])}}`, d16.subarray(0, 12)),
        /tensor "b" at \[4, 12\] overlaps tensor "a"/,
      ],
      [
        "gap",
        stFile(`{"a": ${f32Entry([1], [0, 4])}, "b": ${f32Entry([2], [8, 16])}}`, d16),
        /tensor "b" at \[8, 16\] leaves a gap after tensor "a"/,
      ],
      ["not from zero", stFile(`{"a": ${f32Entry([2], [8, 16])}}`, d16), /leaves a gap after the start of the data/],
      [
        "trailing bytes",
        stFile(`{"a": ${f32Entry([2], [0, 8])}}`, d16),
        /describes 8 bytes of data, the file holds 16 \(trailing bytes\)/,
      ],
      ["metadata not strings", stFile('{"__metadata__": {"epoch": 3}}'), /"__metadata__" is not a map of strings/],
      [
        "truncated data",
        good.subarray(0, good.length - 3),
        /truncated: the header describes 56 bytes of data, the file holds 53/,
      ],
      ["header cut short", good.subarray(0, 20), /runs past the end of the file \(20 bytes\)/],
    ];
    const before = liveTensors();
    for (const [name, bytes, problem] of cases) {
      const path = `${dir}/${name.replaceAll(" ", "_")}.safetensors`;
      Deno.writeFileSync(path, bytes);
      for (const load of [loadSafetensors, loadCheckpoint]) {
        assert.throws(() => load(path), (e: unknown) => {
          assert.ok(e instanceof CheckpointError, `${name}: ${e}`);
          assert.ok(e.message.startsWith(`${path}: `), `${name}: message names the file: ${e.message}`);
          assert.match(e.message, problem, name);
          return true;
        });
      }
    }
    assert.throws(() => loadSafetensors(`${dir}/missing.safetensors`), /missing\.safetensors: cannot open/);
    assert.equal(liveTensors(), before, "no tensor survives a rejected file");
  }));

Deno.test(".pt: corrupt, truncated and non-state-dict files are rejected, naming the file", () =>
  withDir(async (dir) => {
    const good = `${dir}/good.pt`, list = `${dir}/list.pt`, badPickle = `${dir}/bad_pickle.pt`;
    const deflated = `${dir}/deflated.pt`, tensorOnly = `${dir}/tensor.pt`;
    const ref = await torchRef({
      write: {
        seed: 1,
        code: `${PY_MODEL}
import zipfile
torch.save(sd, ${py(good)})
torch.save([torch.zeros(2), torch.ones(3)], ${py(list)})
torch.save(torch.zeros(3), ${py(tensorOnly)})
with zipfile.ZipFile(${py(badPickle)}, "w") as z:
    z.writestr("archive/data.pkl", b"\\x80\\x02}q\\x00(X\\x01\\x00\\x00\\x00aq\\x01\\xff")
with zipfile.ZipFile(${py(deflated)}, "w", compression=zipfile.ZIP_DEFLATED) as z:
    z.writestr("archive/data.pkl", b"\\x80\\x02}q\\x00.")
result = True`,
      },
    });
    if (ref.write !== true) throw new Error(JSON.stringify(ref.write));
    const bytes = Deno.readFileSync(good);
    const random = new Uint8Array(4096).map((_, i) => (i * 2654435761) >>> 24);
    const write = (name: string, b: Uint8Array) => {
      Deno.writeFileSync(`${dir}/${name}`, b);
      return `${dir}/${name}`;
    };
    const cases: [string, RegExp][] = [
      [write("random.pt", random), /not a torch.save checkpoint \(no zip signature/],
      [write("empty.pt", new Uint8Array(0)), /the file is empty/],
      [write("truncated.pt", bytes.subarray(0, bytes.length >> 1)), /no end-of-central-directory record/],
      [write("cut_end.pt", bytes.subarray(0, bytes.length - 10)), /no end-of-central-directory record/],
      [write("zip_garbage.pt", Uint8Array.of(0x50, 0x4b, 3, 4, ...random)), /cannot read the checkpoint/],
      [list, /holds a list, not a dict of tensors/],
      [tensorOnly, /holds a single tensor, not a dict of tensors/],
      [badPickle, /cannot read the checkpoint: pickle: unsupported opcode 0xff/],
      [deflated, /is compressed/],
      [`${dir}/missing.pt`, /cannot open/],
    ];
    const before = liveTensors();
    for (const [path, problem] of cases) {
      for (const load of [loadPt, loadCheckpoint]) {
        // loadCheckpoint reads a file without the zip signature as safetensors, with its errors.
        if (load === loadCheckpoint && /random|empty/.test(path)) continue;
        assert.throws(() => load(path), (e: unknown) => {
          assert.ok(e instanceof CheckpointError, `${path}: ${e}`);
          assert.ok(e.message.startsWith(`${path}: `), `message names the file: ${e.message}`);
          assert.match(e.message, problem, path);
          return true;
        });
      }
    }
    assert.throws(() => loadCheckpoint(`${dir}/random.pt`), /random\.pt: not a valid safetensors file/);
    assert.equal(liveTensors(), before, "no tensor survives a rejected file");
  }));

// ---------------------------------------------------------------- hostile files (issue 11)

/**
 * Asserts that loading `bytes` (written to `dir`; a .pt name is read by loadPt, others by
 * loadSafetensors, and both by loadCheckpoint when no limits are given) fails with a
 * CheckpointError naming the file; returns it.
 */
function assertRejected(
  dir: string,
  name: string,
  bytes: Uint8Array,
  problem: RegExp,
  limits?: Limits,
): CheckpointError {
  const path = `${dir}/${name}`;
  Deno.writeFileSync(path, bytes);
  let caught: unknown;
  const before = liveTensors();
  const load = name.endsWith(".pt") ? loadPt : loadSafetensors;
  const loaders = limits ? [() => load(path, limits)] : [() => load(path), () => loadCheckpoint(path)];
  for (const loader of loaders) {
    assert.throws(loader, (e: unknown) => {
      caught = e;
      assert.ok(e instanceof CheckpointError, `${name}: ${e}`);
      assert.ok(e.message.startsWith(`${path}: `), `message names the file: ${e.message}`);
      assert.match(e.message, problem, name);
      return true;
    });
  }
  assert.equal(liveTensors(), before, `${name}: no tensor survives`);
  return caught as CheckpointError;
}

/** A .pt of one dict built by `body` (between MARK and SETITEMS) over the given float32 storages. */
function ptOf(body: (p: Pickler) => void, storages: Record<string, number[]> = {}): Uint8Array {
  const p = new Pickler();
  p.orderedDict().mark();
  body(p);
  p.op(0x75);
  return ptZip(p.stop().bytes, Object.fromEntries(Object.entries(storages).map(([k, v]) => [k, f32Bytes(v)]))).bytes;
}

Deno.test(".pt: hand-written views (offset, transpose, stride 0) load as torch.load gives them", () =>
  withDir((dir) => {
    const path = `${dir}/views.pt`;
    Deno.writeFileSync(
      path,
      ptOf((p) => {
        p.str("w").tensor("FloatStorage", "0", 6, 0, [2, 3], [3, 1]);
        p.str("t").tensor("FloatStorage", "0", 6, 1, [2, 2], [1, 3]);
        p.str("e").tensor("FloatStorage", "1", 1, 0, [3, 2], [0, 0]);
        p.str("big").int(-(2n ** 70n));
      }, { "0": [1, 2, 3, 4, 5, 6], "1": [7.5] }),
    );
    using t = loadPt(path);
    const values = (name: string) => [[...t.get(name)!.shape], Array.from(t.get(name)!.toArray() as Float32Array)];
    assert.deepEqual(values("w"), [[2, 3], [1, 2, 3, 4, 5, 6]]);
    assert.deepEqual(values("t"), [[2, 2], [2, 5, 3, 6]]);
    assert.deepEqual(values("e"), [[3, 2], [7.5, 7.5, 7.5, 7.5, 7.5, 7.5]]);
    assert.deepEqual(t.skipped, [{ name: "big", reason: "not a tensor but a bigint" }]);
  }));

Deno.test(".pt: a 620-byte stride-0 view of 1 GiB is refused, naming the key and shape; views must fit their storage", () =>
  withDir((dir) => {
    const huge = ptOf((p) => p.str("w").tensor("FloatStorage", "0", 1, 0, [16384, 16384], [0, 0]), { "0": [1] });
    assert.ok(huge.length < 1000, `${huge.length} bytes`);
    const e = assertRejected(
      dir,
      "huge.pt",
      huge,
      /cannot read tensor "w": tensor "w" of shape \[16384, 16384\] \(stride \[0, 0\]\) brings the tensors made to 1073741824 bytes, .* exceeds the limit maxBytes = 536870912/,
    );
    assert.ok(e.cause instanceof LimitError && e.cause.limit === "maxBytes");
    const outside: [string, (p: Pickler) => void, RegExp][] = [
      [
        "offset",
        (p) => p.str("w").tensor("FloatStorage", "0", 4, 3, [2], [1]),
        /view reaches element 4 of a storage of 4/,
      ],
      [
        "stride",
        (p) => p.str("w").tensor("FloatStorage", "0", 4, 0, [2, 2], [3, 1]),
        /view reaches element 4 of a storage of 4/,
      ],
      [
        "huge stride",
        (p) => p.str("w").tensor("FloatStorage", "0", 4, 0, [2], [2 ** 52]),
        /view reaches element 4503599627370496 of a storage of 4/,
      ],
      [
        "numel",
        (p) => p.str("w").tensor("FloatStorage", "0", 9, 0, [3, 3], [3, 1]),
        /storage entry has 16 bytes, 9 elements need more/,
      ],
    ];
    for (const [name, body, problem] of outside) {
      assertRejected(dir, `${name}.pt`, ptOf(body, { "0": [1, 2, 3, 4] }), problem);
    }
  }));

Deno.test(".pt: self-referencing, 200,000-deep and 2^40-path dict graphs are CheckpointErrors, not stack overflows", () =>
  withDir((dir) => {
    // {"self": <the dict itself>}
    const self = new Pickler();
    self.orderedDict();
    const k = self.put();
    self.str("self").get(k).op(0x73);
    assertRejected(dir, "self.pt", ptZip(self.stop().bytes, {}).bytes, /the dict at "self" contains itself/);

    // {"a": {"a": {... 200,000 levels}}}
    const deep = new Pickler();
    for (let i = 0; i < 200_000; i++) deep.op(0x7d, 0x8c, 1, 0x61); // EMPTY_DICT, "a"
    deep.op(0x7d);
    for (let i = 0; i < 200_000; i++) deep.op(0x73); // SETITEM, innermost first
    const e = assertRejected(
      dir,
      "deep.pt",
      ptZip(deep.stop().bytes, {}).bytes,
      /dicts nested at .* exceeds the limit maxDepth = 1000/,
    );
    assert.ok(e.cause instanceof LimitError);

    // 40 levels, each {"a": next, "b": next}: 1.6 KB that would name 2^40 entries.
    // Each level is memoised and popped; the next one refers to it twice.
    const levels = (p: Pickler, n: number) => {
      p.op(0x7d).str("x").int(1).op(0x73);
      let memo = p.put();
      p.op(0x30);
      for (let i = 0; i < n; i++) {
        p.op(0x7d).mark().str("a").get(memo).str("b").get(memo).op(0x75);
        memo = p.put();
        p.op(0x30);
      }
      return p.get(memo).stop().bytes;
    };
    const graph = ptZip(levels(new Pickler(), 40), {}).bytes;
    assert.ok(graph.length < 2000, `${graph.length} bytes`);
    assertRejected(
      dir,
      "shared.pt",
      graph,
      /the entries of the checkpoint's dicts exceeds the limit maxEntries = 1000000/,
    );
    // Within the limits, sharing is what torch.load would give: each path once.
    const path = `${dir}/few.pt`;
    Deno.writeFileSync(path, ptZip(levels(new Pickler(), 3), {}).bytes);
    using t = loadPt(path);
    assert.equal(t.skipped.length, 8);
    assert.deepEqual(t.skipped[0], { name: "a.a.a.x", reason: "not a tensor but a number" });
  }));

Deno.test(".pt: pickle integers are parsed in linear time and capped by maxIntegerDigits; long lists do not overflow", () =>
  withDir((dir) => {
    const n = 400_000;
    const long4 = (bytes: Uint8Array) => {
      const p = new Pickler();
      p.op(0x8b).w.uint(bytes.length, 4).bytes(bytes);
      return p.stop().bytes;
    };
    const hooks = { call: () => undefined, persistentLoad: (x: unknown) => x };
    // 1 followed by zeros, little-endian: 256^(n-1).
    const one = new Uint8Array(n);
    one[n - 1] = 1;
    assert.equal(unpickle(long4(one), hooks, { maxIntegerDigits: Infinity }), 1n << BigInt(8 * (n - 1)));
    assert.equal(unpickle(long4(new Uint8Array(n).fill(0xff)), hooks, { maxIntegerDigits: Infinity }), -1);
    assert.throws(() => unpickle(long4(one), hooks), (e: unknown) => {
      assert.ok(e instanceof LimitError);
      assert.match(e.message, /an integer of 400000 bytes exceeds the limit maxIntegerDigits = 4300/);
      return true;
    });
    const p = new Pickler();
    p.orderedDict().str("x").op(0x8b).w.uint(n, 4).bytes(one);
    p.op(0x73);
    assertRejected(
      dir,
      "long4.pt",
      ptZip(p.stop().bytes, {}).bytes,
      /an integer of 400000 bytes exceeds the limit maxIntegerDigits/,
    );

    // APPENDS of 300,000 items (spreading them into push() overflowed the stack).
    const list = new Pickler();
    list.orderedDict().str("ids").op(0x5d).mark();
    for (let i = 0; i < 300_000; i++) list.int(i % 200);
    list.op(0x65, 0x73);
    const path = `${dir}/list.pt`;
    Deno.writeFileSync(path, ptZip(list.stop().bytes, {}).bytes);
    using t = loadPt(path);
    assert.deepEqual(t.skipped, [{ name: "ids", reason: "not a tensor but a list" }]);
    // Each value a pickle makes counts against maxEntries.
    assertRejected(
      dir,
      "list.pt",
      Deno.readFileSync(path),
      /the values of the pickle exceeds the limit maxEntries = 1000/,
      {
        maxEntries: 1000,
      },
    );
  }));

Deno.test(".pt: damaged archives fail their CRC-32; clashing names are refused", () =>
  withDir((dir) => {
    const good = ptOf((p) => p.str("w").tensor("FloatStorage", "0", 2, 0, [2], [1]), { "0": [1, 2] });
    // One bit of the storage's 8 bytes flipped: a value changes, so the load must fail.
    const damaged = good.slice();
    const needle = f32Bytes([1, 2]);
    const pos = damaged.findIndex((_, i) => needle.every((b, k) => damaged[i + k] === b));
    assert.ok(pos > 0);
    damaged[pos + 3] ^= 0x01;
    assertRejected(dir, "flipped.pt", damaged, /entry "archive\/data\/0" fails its CRC-32 check/);

    const clash = ptOf((p) => {
      p.str("a.b").tensor("FloatStorage", "0", 2, 0, [2], [1]);
      p.str("a").op(0x7d).str("b").tensor("FloatStorage", "0", 2, 0, [2], [1]).op(0x73);
    }, { "0": [1, 2] });
    assertRejected(dir, "clash.pt", clash, /two entries are named "a\.b"/);
  }));

Deno.test("safetensors: dtypes named like Object.prototype's members are rejected, not TypeErrors", () =>
  withDir((dir) => {
    for (const dtype of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      const bytes = safetensorsFile({ a: { dtype, shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)).bytes;
      assertRejected(dir, "proto.safetensors", bytes, new RegExp(`dtype "${dtype}" is not one mdm reads`));
    }
    const many = Object.fromEntries(
      Array.from({ length: 20 }, (_, i) => [`t${i}`, { dtype: "U8", shape: [1], data_offsets: [i, i + 1] }]),
    );
    const path = `${dir}/many.safetensors`;
    Deno.writeFileSync(path, safetensorsFile(many, new Uint8Array(20)).bytes);
    using t = loadSafetensors(path);
    assert.equal(t.size, 20);
    assertRejected(
      dir,
      "many.safetensors",
      safetensorsFile(many, new Uint8Array(20)).bytes,
      /a header of 20 entries exceeds the limit maxEntries = 10/,
      {
        maxEntries: 10,
      },
    );
  }));

Deno.test("safetensors: saves are atomic", () =>
  withDir((dir) => {
    const path = `${dir}/model.safetensors`;
    const first = { w: randn([4, 4]), b: randn([4]) };
    saveSafetensors(path, first);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["model.safetensors"], "no temporary file left");
    const before = Deno.readFileSync(path);

    // A save that fails mid-way (a disposed tensor) must leave the previous file as it was.
    const gone = randn([3]);
    gone.dispose();
    assert.throws(() => saveSafetensors(path, { w: randn([4, 4]), gone }), DisposedError);
    assert.deepEqual(Deno.readFileSync(path), before, "the old checkpoint is intact");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["model.safetensors"], "temporary file removed");
    using back = loadSafetensors(path);
    assertSameTensor(back.get("w"), first.w, "w");

    // Metadata must be strings (as the library's Dict[str, str]); the failure leaves no trace.
    assert.throws(
      () => saveSafetensors(path, first, { epoch: 3 } as unknown as Record<string, string>),
      /metadata epoch must be a string/,
    );
    assert.throws(() => saveSafetensors(path, { __metadata__: first.b }), /reserved/);
    assert.deepEqual(Deno.readFileSync(path), before);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["model.safetensors"]);

    // A successful save replaces the file.
    saveSafetensors(path, { only: zeros([2]) });
    using replaced = loadSafetensors(path);
    assert.deepEqual([...replaced.keys()], ["only"]);
  }));

/** mdm's copy of PY_MODEL's nn.Sequential: the same keys and shapes. */
class Tiny extends Module {
  readonly layers: Module[];
  constructor() {
    const vb = rootBuilder();
    super(vb);
    this.layers = [
      new Conv2d(vb.pp(0), 3, 8, 3),
      new GroupNorm(vb.pp(1), 8, 4),
      new BatchNorm1d(vb.pp(2), 8),
      new Linear(vb.pp(3), 4, 2),
    ];
  }
}

Deno.test("loadModelWeights: strict and non-strict loading into models", async (t) => {
  manualSeed(11);
  await t.step("a .pt from PyTorch into a layer-built model", () =>
    withDir(async (dir) => {
      const plain = `${dir}/tiny.pt`, nested = `${dir}/nested.pt`;
      const ref = await torchRef({
        sd: {
          seed: 9,
          code: `${PY_MODEL}
torch.save(sd, ${py(plain)})
torch.save({"model": sd}, ${py(nested)})
result = dict(sd)`,
        },
      });
      const sd = ref.sd as Record<string, RefValue>;
      if ("error" in sd) throw new Error(String(sd.error));
      const model = new Tiny();
      const report = loadModelWeights(model, plain);
      assert.deepEqual(report.loaded.sort(), Object.keys(sd).sort());
      assert.deepEqual([report.missing, report.unexpected, report.mismatched], [[], [], []]);
      for (const [name, t] of model.stateDict()) assertClose(t, sd[name], EXACT, name);

      // The nested file's keys carry a "model." prefix: strict refuses, non-strict loads nothing.
      const fresh = new Tiny();
      assert.throws(() => loadModelWeights(fresh, nested), (e: unknown) => {
        assert.ok(e instanceof StateDictError);
        assert.match(e.message, /missing keys: 0\.weight/);
        assert.match(e.message, /unexpected keys: model\.0\.weight/);
        return true;
      });
      const loose = loadModelWeights(fresh, nested, { strict: false });
      assert.deepEqual(loose.loaded, []);
      assert.equal(loose.missing.length, Object.keys(sd).length);
    }));

  await t.step("a UNet through safetensors, and into one with learned sigma", () =>
    withDir((dir) => {
      const config = {
        imageSize: 16,
        modelChannels: 32,
        channelMult: [1, 2],
        attentionResolutions: [8],
        numResBlocks: 1,
      };
      const path = `${dir}/unet.safetensors`;
      const source = new UNet(config);
      const weights = source.stateDict();
      saveSafetensors(path, weights, { config: JSON.stringify(config) });

      const target = new UNet(config);
      const report = loadModelWeights(target, path);
      assert.deepEqual(report.loaded.sort(), [...weights.keys()].sort());
      for (const [name, t] of target.stateDict()) assertSameTensor(t, weights.get(name)!, name);

      // learnSigma doubles the output channels: only out.2 differs in shape.
      const sigma = new UNet({ ...config, learnSigma: true });
      assert.throws(() => loadModelWeights(sigma, path), (e: unknown) => {
        assert.ok(e instanceof StateDictError);
        assert.match(e.message, /shape mismatches: .*out\.2\.weight \(model \[6, 32, 3, 3\], file \[3, 32, 3, 3\]\)/);
        return true;
      });
      const loose = loadModelWeights(sigma, path, { strict: false });
      assert.deepEqual(loose.mismatched.map((m) => m.key).sort(), ["out.2.bias", "out.2.weight"]);
      assert.deepEqual([loose.missing, loose.unexpected], [[], []]);
      assert.equal(loose.loaded.length, weights.size - 2);
      const own = sigma.stateDict();
      for (const name of loose.loaded) assertSameTensor(own.get(name), weights.get(name)!, name);
    }));
});
