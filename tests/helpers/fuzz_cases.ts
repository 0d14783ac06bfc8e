// The fuzzer's cases: a seed corpus of small valid files of every format mdm reads (written by
// hand in fuzz_files.ts), and a seeded mutator that damages them as hostile or broken files do:
// bit flips, truncation, length/count/offset fields set to extremes, numbers in text replaced by
// huge or odd ones, slices deleted, repeated or inserted. A case is a function of its seed alone,
// so a failure is reproduced with `deno run -A tests/helpers/fuzz_worker.ts --seed N`.
import { crc32 } from "node:zlib";
import {
  bmpFile,
  type Built,
  concat,
  f32Bytes,
  type FieldPos,
  monusegXml,
  npyFile,
  Pickler,
  pngFile,
  ptZip,
  safetensorsFile,
  tiffFile,
} from "./fuzz_files.ts";

export const FORMATS = ["png", "tiff", "bmp", "npy", "xml", "safetensors", "pt", "pickle"] as const;
export type Format = typeof FORMATS[number];

/** A valid file to mutate. */
export interface SeedFile {
  format: Format;
  name: string;
  bytes: Uint8Array;
  fields: FieldPos[];
  /** Pickles: the storages of the archive a mutated pickle is packed into. */
  storages?: Record<string, Uint8Array>;
}

/** One fuzz case. */
export interface Case {
  seed: number;
  format: Format;
  base: SeedFile;
  /** The mutated file (for pickles, the mutated pickle before it is packed into an archive). */
  bytes: Uint8Array;
  /** What was done, for the report. */
  ops: string[];
  /** Only cut short: a successful decode must equal the original's. */
  truncatedOnly: boolean;
  /**
   * The damage is one the file's checksums cannot see: PNG CRCs recomputed afterwards (so the
   * decoder's checks behind them are reached), or whole chunks moved.
   */
  unchecked: boolean;
}

/** mulberry32: a small seeded generator of floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ 0x5bd1e995) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const values = (n: number, max: number, salt: number) =>
  Array.from({ length: n }, (_, i) => (i * 7919 + salt * 104729 + (i >> 3)) % (max + 1));

function pngSeeds(): Built[] {
  const pal = Uint8Array.from(values(8 * 3, 255, 5));
  const p = (
    w: number,
    h: number,
    colourType: 0 | 2 | 3 | 4 | 6,
    depth: 1 | 2 | 4 | 8 | 16,
    interlace = false,
    extra = {},
  ) => {
    const ch = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colourType];
    const max = colourType === 3 ? Math.min(2 ** depth, 8) - 1 : 2 ** depth - 1;
    return pngFile({
      width: w,
      height: h,
      colourType,
      depth,
      interlace,
      samples: values(w * h * ch, max, w + depth),
      palette: colourType === 3 ? pal : undefined,
      ...extra,
    });
  };
  return [
    p(9, 7, 2, 8),
    p(8, 5, 0, 8),
    p(11, 6, 6, 8, true),
    p(7, 4, 0, 1),
    p(10, 3, 0, 4, true),
    p(6, 6, 2, 16),
    p(5, 9, 4, 8),
    p(12, 5, 3, 8, false, { trns: Uint8Array.of(0, 128, 255) }),
    p(13, 4, 3, 2, true),
    p(4, 4, 4, 16, true),
  ];
}

function tiffSeeds(): Built[] {
  const t = (
    w: number,
    h: number,
    spp: number,
    bps: 8 | 16,
    photometric: 0 | 1 | 2 | 3,
    compression: 1 | 5 | 8 | 32773,
    extra = {},
  ) =>
    tiffFile({
      width: w,
      height: h,
      spp,
      bps,
      photometric,
      compression,
      rowsPerStrip: 3,
      samples: values(w * h * spp, bps === 8 ? 255 : 65535, w + spp),
      ...extra,
    });
  return [
    t(9, 7, 3, 8, 2, 5, { predictor: 2 }), // as MoNuSeg's train images
    t(10, 8, 3, 8, 2, 32773), // as MoNuSeg's test images
    t(8, 5, 1, 8, 1, 1, { ifdFirst: true }),
    t(7, 6, 3, 8, 2, 8, { predictor: 2, bigEndian: true }),
    t(6, 4, 1, 16, 1, 1),
    t(5, 5, 3, 16, 2, 5, { predictor: 2, bigEndian: true, ifdFirst: true }),
    t(6, 7, 4, 8, 2, 5),
    t(9, 3, 1, 8, 0, 32773),
    t(8, 6, 1, 8, 3, 5, { colorMap: values(768, 65535, 3) }),
    t(40, 30, 3, 8, 2, 5, { rowsPerStrip: 30 }), // long enough for 10- and 11-bit LZW codes
  ];
}

function bmpSeeds(): Built[] {
  return [
    bmpFile(9, 7, values(9 * 7 * 3, 255, 1)),
    bmpFile(6, 5, values(30, 7, 2), Uint8Array.from(values(8 * 3, 255, 4))),
    bmpFile(4, 3, values(4 * 3 * 3, 255, 6)),
  ];
}

function npySeeds(): Built[] {
  const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return [
    npyFile("|u1", [5, 7], Uint8Array.from(values(35, 4, 1))),
    npyFile("<i4", [3, 4], bytes(Int32Array.from(values(12, 9, 2)))),
    npyFile("<f4", [2, 3, 1], bytes(Float32Array.from(values(6, 3, 3)))),
    npyFile("<i8", [6], bytes(BigInt64Array.from(values(6, 100, 4), BigInt)), 2),
    npyFile("<u2", [4, 4], bytes(Uint16Array.from(values(16, 255, 5)))),
  ];
}

function xmlSeeds(): Built[] {
  const text = (polys: [number, number][][]) => ({ bytes: new TextEncoder().encode(monusegXml(polys)), fields: [] });
  return [
    text([[[2.5, 3], [10, 3.5], [9, 12], [3, 10]], [[20, 20], [30, 22], [25, 35]], [[40, 40], [41, 41]]]),
    text([[[0, 0], [63, 0], [63, 63], [0, 63]], [[10, 10], [50, 12], [30, 50], [12, 40], [5, 30]]]),
    text([[[-2.9, 5], [8, -1.2], [65.5, 30]], [[1, 1], [5, 5], [9, 9]]]),
  ];
}

function safetensorsSeeds(): Built[] {
  const data = (n: number, salt: number) => Uint8Array.from(values(n, 255, salt));
  return [
    safetensorsFile(
      {
        __metadata__: { format: "pt" },
        w: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] },
        b: { dtype: "I64", shape: [2], data_offsets: [24, 40] },
        m: { dtype: "U8", shape: [3], data_offsets: [40, 43] },
      },
      data(43, 1),
    ),
    safetensorsFile(
      {
        h: { dtype: "F16", shape: [4], data_offsets: [0, 8] },
        g: { dtype: "BF16", shape: [1, 2], data_offsets: [8, 12] },
        s: { dtype: "F64", shape: [], data_offsets: [12, 20] },
        e: { dtype: "I32", shape: [0, 3], data_offsets: [20, 20] },
        k: { dtype: "BOOL", shape: [2], data_offsets: [20, 22] },
      },
      Uint8Array.from([...data(20, 2), 0, 1]),
    ),
  ];
}

/** Pickles of state dicts as torch.save writes them, with the storages their archives hold. */
function pickleSeeds(): { built: Built; storages: Record<string, Uint8Array> }[] {
  const flat = new Pickler();
  flat.orderedDict().put();
  flat.mark();
  flat.str("conv.weight").tensor("FloatStorage", "0", 6, 0, [2, 3], [3, 1]);
  flat.str("conv.bias").tensor("FloatStorage", "1", 2, 0, [2], [1]);
  flat.str("bn.num_batches_tracked").tensor("LongStorage", "2", 1, 0, [], []);
  flat.op(0x75);
  const nested = new Pickler();
  nested.op(0x7d).put();
  nested.mark().str("model").orderedDict().put();
  nested.mark();
  nested.str("w").tensor("FloatStorage", "0", 6, 0, [3, 2], [1, 3]); // a transposed view
  nested.str("row").tensor("FloatStorage", "0", 6, 3, [3], [1]); // an offset view of the same storage
  nested.str("e").tensor("FloatStorage", "1", 2, 1, [2, 2], [0, 0]); // an expanded one
  nested.str("h").tensor("HalfStorage", "3", 2, 0, [2], [1]);
  nested.op(0x75);
  nested.str("epoch").int(7).str("lr").float(1e-4).str("big").int(-(2n ** 70n));
  nested.str("names").op(0x5d).mark().str("a").str("b").op(0x65);
  nested.str("ema").get(1); // the same dict twice, as saving one state dict under two keys does
  nested.op(0x75);
  const storages = {
    "0": f32Bytes([1, 2, 3, 4, 5, 6]),
    "1": f32Bytes([0.5, -0.5]),
    "2": new Uint8Array(new BigInt64Array([3n]).buffer),
    "3": Uint8Array.of(0x00, 0x3c, 0x00, 0xc0),
  };
  return [{ built: flat.stop(), storages }, { built: nested.stop(), storages }];
}

/** The seed corpus, by format. */
export function corpus(): Record<Format, SeedFile[]> {
  const seeds = (format: Format, built: Built[]) =>
    built.map((b, i): SeedFile => ({ format, name: `${format}-${i}`, bytes: b.bytes, fields: b.fields }));
  const pickles = pickleSeeds();
  return {
    png: seeds("png", pngSeeds()),
    tiff: seeds("tiff", tiffSeeds()),
    bmp: seeds("bmp", bmpSeeds()),
    npy: seeds("npy", npySeeds()),
    xml: seeds("xml", xmlSeeds()),
    safetensors: seeds("safetensors", safetensorsSeeds()),
    pt: seeds("pt", pickles.map((p) => ptZip(p.built.bytes, p.storages))),
    pickle: pickles.map((p, i) => ({
      format: "pickle",
      name: `pickle-${i}`,
      bytes: p.built.bytes,
      fields: p.built.fields,
      storages: p.storages,
    })),
  };
}

/** Recomputes the CRC of every PNG chunk whose length still fits the file. */
function repairPngCrcs(bytes: Uint8Array): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let pos = 8; pos + 12 <= bytes.length;) {
    const length = v.getUint32(pos);
    if (pos + 12 + length > bytes.length) break;
    v.setUint32(pos + 8 + length, crc32(bytes.subarray(pos + 4, pos + 8 + length)));
    pos += 12 + length;
  }
}

/** The bytes a case's decoder reads: a mutated pickle goes into an archive with intact CRCs. */
export function fileOf(c: Pick<Case, "format" | "base" | "bytes">): Uint8Array {
  return c.format === "pickle" ? ptZip(c.bytes, c.base.storages!).bytes : c.bytes;
}

const TEXT_NUMBERS = ["0", "-1", "1e308", "-1e308", "4294967296", "18446744073709551617", "NaN", "1.5", "-0", "01"];
// Bytes a hostile pickle is made of: its opcodes (structure, memo, lengths).
const PICKLE_OPS = [
  0x28,
  0x29,
  0x30,
  0x31,
  0x32,
  0x4b,
  0x4e,
  0x51,
  0x52,
  0x5d,
  0x61,
  0x62,
  0x65,
  0x68,
  0x6c,
  0x71,
  0x73,
  0x74,
  0x75,
  0x7d,
  0x81,
  0x85,
  0x86,
  0x87,
  0x88,
  0x8a,
  0x8b,
  0x94,
  0x2e,
];
const XML_BYTES = [...new TextEncoder().encode("<>/=\"' RegionVertexXY0123456789.-e!?\n")];

/** The case of `seed` (its format chosen round-robin, so every format gets an equal share). */
export function makeCase(seed: number, seeds: Record<Format, SeedFile[]>): Case {
  const rand = prng(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const format = FORMATS[seed % FORMATS.length];
  const base = pick(seeds[format]);
  let bytes: Uint8Array = base.bytes.slice();
  const ops: string[] = [];
  const text = format === "xml" || format === "npy" || format === "safetensors";
  const alphabet = format === "pickle" ? PICKLE_OPS : format === "xml" ? XML_BYTES : null;

  const extreme = (width: number, old: number, at: number) => {
    const max = width === 8 ? 2 ** 53 : 2 ** (8 * width) - 1;
    const options = [
      0,
      1,
      2,
      max,
      max - 1,
      2 ** 31 - 1,
      2 ** 31,
      0xffff,
      0x8000,
      bytes.length,
      bytes.length - 1,
      bytes.length + 1,
      int(bytes.length),
      at,
      at - 2,
      old + 1,
      old - 1,
      old * 2,
      old >> 1,
      int(2 ** Math.min(8 * width, 32)),
      // Near another field: an offset pointing back into the file's own structure (an IFD at itself).
      base.fields.length ? pick(base.fields).at + pick([-2, 0, 2]) : 0,
    ];
    return Math.max(0, Math.min(max, pick(options)));
  };
  const write = (at: number, width: number, le: boolean, v: number) => {
    if (at < 0 || at + width > bytes.length) return;
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, width);
    if (width === 1) view.setUint8(0, v & 0xff);
    else if (width === 2) view.setUint16(0, v & 0xffff, le);
    else if (width === 4) view.setUint32(0, v >>> 0, le);
    else view.setBigUint64(0, BigInt(Math.floor(v)), le);
  };
  const read = (at: number, width: number, le: boolean) => {
    if (at < 0 || at + width > bytes.length) return 0;
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, width);
    return width === 1
      ? view.getUint8(0)
      : width === 2
      ? view.getUint16(0, le)
      : width === 4
      ? view.getUint32(0, le)
      : Number(view.getBigUint64(0, le));
  };

  // Fields first, while the file still has its original layout; then bytes; then changes of length.
  const kinds: string[] = [];
  const truncateOnly = rand() < 0.15;
  if (truncateOnly) kinds.push("truncate");
  else {
    const n = rand() < 0.6 ? 1 : 2 + int(2);
    const weights: [string, number][] = [
      ["field", base.fields.length ? 4 : 0],
      ["extreme", 1],
      ["flip", 3],
      ["bytes", 1],
      ["digits", text ? 4 : 0],
      ["splice", 2],
      ["truncate", 1],
      ["structure", format === "png" || format === "tiff" ? 3 : 0],
    ];
    const total = weights.reduce((s, [, w]) => s + w, 0);
    for (let i = 0; i < n; i++) {
      let r = rand() * total;
      for (const [k, w] of weights) {
        if ((r -= w) < 0) {
          kinds.push(k);
          break;
        }
      }
    }
    const order = ["structure", "field", "extreme", "flip", "bytes", "digits", "splice", "truncate"];
    kinds.sort((a, b) => order.indexOf(a) - order.indexOf(b));
  }
  for (const kind of kinds) {
    if (bytes.length === 0) break;
    switch (kind) {
      case "structure": {
        // Whole, intact parts moved: PNG chunks dropped, repeated or swapped (their CRCs still
        // match), a TIFF directory entry dropped. Only the decoder's structural checks can object.
        if (format === "png") {
          const chunks: Uint8Array[] = [];
          const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
          for (let pos = 8; pos + 12 <= bytes.length;) {
            const end = pos + 12 + v.getUint32(pos);
            chunks.push(bytes.slice(pos, end));
            pos = end;
          }
          const i = int(chunks.length), j = int(chunks.length), how = int(3);
          if (how === 0) chunks.splice(i, 1);
          else if (how === 1) chunks.splice(j, 0, chunks[i]);
          else [chunks[i], chunks[j]] = [chunks[j], chunks[i]];
          bytes = concat([bytes.subarray(0, 8), ...chunks]);
          ops.push(`chunks:${["drop", "repeat", "swap"][how]}@${i},${j}`);
        } else {
          const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
          const le = bytes[0] === 0x49, ifd = v.getUint32(4, le), n = v.getUint16(ifd, le);
          const k = int(n), at = ifd + 2 + 12 * k;
          bytes.copyWithin(at, at + 12, ifd + 2 + 12 * n);
          v.setUint16(ifd, n - 1, le);
          ops.push(`ifd:drop@${k}`);
        }
        break;
      }
      case "field": {
        const f = pick(base.fields);
        const v = extreme(f.width, read(f.at, f.width, f.le), f.at);
        write(f.at, f.width, f.le, v);
        ops.push(`field@${f.at}/${f.width}=${v}`);
        break;
      }
      case "extreme": {
        const width = pick([2, 4, 8] as const), at = int(bytes.length), le = rand() < 0.5;
        const v = extreme(width, read(at, width, le), at);
        write(at, width, le, v);
        ops.push(`set@${at}/${width}${le ? "le" : "be"}=${v}`);
        break;
      }
      case "flip": {
        const n = rand() < 0.5 ? 1 : 2 + int(6);
        for (let i = 0; i < n; i++) {
          const bit = int(bytes.length * 8);
          bytes[bit >> 3] ^= 1 << (bit & 7);
          ops.push(`flip@${bit >> 3}.${bit & 7}`);
        }
        break;
      }
      case "bytes": {
        const n = 1 + int(4);
        for (let i = 0; i < n; i++) {
          const at = int(bytes.length), v = alphabet && rand() < 0.7 ? pick(alphabet) : pick([0, 0xff, 0x80, int(256)]);
          bytes[at] = v;
          ops.push(`byte@${at}=${v}`);
        }
        break;
      }
      case "digits": {
        const runs: [number, number][] = [];
        for (let i = 0; i < bytes.length; i++) {
          if (bytes[i] < 0x30 || bytes[i] > 0x39) continue;
          let j = i;
          while (j < bytes.length && bytes[j] >= 0x30 && bytes[j] <= 0x39) j++;
          runs.push([i, j]);
          i = j;
        }
        if (runs.length === 0) break;
        const [a, b] = pick(runs);
        const choice = rand() < 0.2 ? "9".repeat(int(2) ? 30 : 400) : pick(TEXT_NUMBERS);
        bytes = concat([bytes.subarray(0, a), new TextEncoder().encode(choice), bytes.subarray(b)]);
        ops.push(`digits@${a}=${choice.length > 12 ? `${choice[0]}x${choice.length}` : choice}`);
        break;
      }
      case "splice": {
        const a = int(bytes.length), len = 1 + int(Math.min(64, bytes.length - a));
        const how = int(3);
        if (how === 0) {
          bytes = concat([bytes.subarray(0, a), bytes.subarray(a + len)]);
          ops.push(`delete@${a}+${len}`);
        } else if (how === 1) {
          const at = int(bytes.length + 1), times = 1 + int(rand() < 0.2 ? 200 : 3);
          const copies = new Array(times).fill(bytes.subarray(a, a + len));
          bytes = concat([bytes.subarray(0, at), ...copies, bytes.subarray(at)]);
          ops.push(`repeat@${a}+${len}x${times}->${at}`);
        } else {
          const junk = Uint8Array.from({ length: len }, () => alphabet && rand() < 0.7 ? pick(alphabet) : int(256));
          bytes = concat([bytes.subarray(0, a), junk, bytes.subarray(a)]);
          ops.push(`insert@${a}+${len}`);
        }
        break;
      }
      case "truncate": {
        const to = int(bytes.length);
        bytes = bytes.slice(0, to);
        ops.push(`truncate->${to}`);
        break;
      }
    }
  }
  // Half the damaged PNGs get valid CRCs again, so that the checks behind the CRC are reached.
  const repaired = format === "png" && !truncateOnly && rand() < 0.5;
  if (repaired) {
    repairPngCrcs(bytes);
    ops.push("crcs-repaired");
  }
  const unchecked = repaired || kinds.includes("structure");
  return { seed, format, base, bytes, ops, truncatedOnly: truncateOnly, unchecked };
}
