// Small valid files of every format mdm reads, written by hand here (not by the code under test),
// for the regression tests of hostile inputs and as the fuzzer's seed corpus. Each builder also
// returns where its length, count and offset fields lie, so a mutator can set them to extremes.
import { crc32, deflateSync } from "node:zlib";

/** A binary field of a file: its byte offset, width in bytes and byte order. */
export interface FieldPos {
  at: number;
  width: 1 | 2 | 4 | 8;
  le: boolean;
}

/** A file and its fields. */
export interface Built {
  bytes: Uint8Array;
  fields: FieldPos[];
}

const enc = new TextEncoder();

/** Joins byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A growable little/big-endian byte writer that remembers the fields it wrote. */
export class Writer {
  #buf = new Uint8Array(256);
  length = 0;
  readonly fields: FieldPos[] = [];
  constructor(readonly le = true) {}

  #room(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    const b = new Uint8Array(Math.max(this.#buf.length * 2, this.length + n));
    b.set(this.#buf.subarray(0, this.length));
    this.#buf = b;
  }
  bytes(b: ArrayLike<number>): this {
    this.#room(b.length);
    this.#buf.set(b, this.length);
    this.length += b.length;
    return this;
  }
  /** An unsigned integer of `width` bytes; `field` records it as a length/offset field. */
  uint(v: number | bigint, width: 1 | 2 | 4 | 8, field = false): this {
    this.#room(width);
    if (field) this.fields.push({ at: this.length, width, le: this.le });
    const view = new DataView(this.#buf.buffer, this.length, width);
    if (width === 1) view.setUint8(0, Number(v));
    else if (width === 2) view.setUint16(0, Number(v), this.le);
    else if (width === 4) view.setUint32(0, Number(v), this.le);
    else view.setBigUint64(0, BigInt(v), this.le);
    this.length += width;
    return this;
  }
  /** Overwrites an unsigned integer already written. */
  patch(at: number, v: number, width: 2 | 4): void {
    const view = new DataView(this.#buf.buffer, at, width);
    if (width === 2) view.setUint16(0, v, this.le);
    else view.setUint32(0, v, this.le);
  }
  done(): Built {
    return { bytes: this.#buf.slice(0, this.length), fields: this.fields };
  }
}

// ---------------------------------------------------------------- PNG

/** One PNG chunk: length, type, data, CRC. */
export function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const w = new Writer(false).uint(data.length, 4).bytes(enc.encode(type)).bytes(data);
  const body = w.done().bytes;
  return concat([body, new Writer(false).uint(crc32(body.subarray(4)), 4).done().bytes]);
}

export const PNG_SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

export interface PngSpec {
  width: number;
  height: number;
  colourType: 0 | 2 | 3 | 4 | 6;
  depth: 1 | 2 | 4 | 8 | 16;
  /** width × height × channels samples (palette indices for colour type 3). */
  samples: ArrayLike<number>;
  interlace?: boolean;
  /** RGB triples. */
  palette?: Uint8Array;
  /** Alpha per palette entry. */
  trns?: Uint8Array;
  /** Leave PLTE out even for a palette image (a malformed file). */
  omitPalette?: boolean;
}

const PNG_CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];

/**
 * A PNG written by hand: rows filtered with the five filter types in turn (so a decoder's
 * unfiltering is exercised), interlaced or not, the image data split over two IDAT chunks.
 */
export function pngFile(spec: PngSpec): Built {
  const { width, height, colourType, depth } = spec;
  const ch = PNG_CHANNELS[colourType];
  const bpp = Math.max(1, (ch * depth) / 8);
  const raw: number[] = [];
  let filter = 0;
  for (const [x0, y0, dx, dy] of spec.interlace ? ADAM7 : [[0, 0, 1, 1]]) {
    const pw = Math.ceil((width - x0) / dx), ph = Math.ceil((height - y0) / dy);
    if (pw <= 0 || ph <= 0) continue;
    const rowBytes = Math.ceil((pw * ch * depth) / 8);
    let prior = new Uint8Array(rowBytes);
    for (let y = 0; y < ph; y++) {
      const row = new Uint8Array(rowBytes);
      for (let px = 0; px < pw; px++) {
        for (let k = 0; k < ch; k++) {
          const v = spec.samples[((y0 + y * dy) * width + x0 + px * dx) * ch + k];
          const j = px * ch + k;
          if (depth === 16) {
            row[2 * j] = v >> 8;
            row[2 * j + 1] = v & 0xff;
          } else if (depth === 8) row[j] = v;
          else row[(j * depth) >> 3] |= v << (8 - depth - ((j * depth) & 7));
        }
      }
      const f = filter++ % 5;
      raw.push(f);
      for (let i = 0; i < rowBytes; i++) {
        const a = i >= bpp ? row[i - bpp] : 0, b = y > 0 ? prior[i] : 0, c = i >= bpp && y > 0 ? prior[i - bpp] : 0;
        const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
        const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][f];
        raw.push((row[i] - pred) & 0xff);
      }
      prior = row;
    }
  }
  const z = new Uint8Array(deflateSync(Uint8Array.from(raw)));
  const ihdr = new Writer(false).uint(width, 4).uint(height, 4).bytes([
    depth,
    colourType,
    0,
    0,
    spec.interlace ? 1 : 0,
  ]);
  const chunks: [string, Uint8Array][] = [["IHDR", ihdr.done().bytes]];
  if (spec.palette && !spec.omitPalette) chunks.push(["PLTE", spec.palette]);
  if (spec.trns) chunks.push(["tRNS", spec.trns]);
  const half = z.length >> 1;
  chunks.push(["IDAT", z.subarray(0, half)], ["IDAT", z.subarray(half)], ["IEND", new Uint8Array(0)]);
  const fields: FieldPos[] = [];
  let at = 8;
  for (const [type, data] of chunks) {
    fields.push({ at, width: 4, le: false });
    if (type === "IHDR") fields.push({ at: at + 8, width: 4, le: false }, { at: at + 12, width: 4, le: false });
    at += 12 + data.length;
  }
  return { bytes: concat([PNG_SIGNATURE, ...chunks.map(([t, d]) => pngChunk(t, d))]), fields };
}

// ---------------------------------------------------------------- TIFF

export interface TiffSpec {
  width: number;
  height: number;
  spp: number;
  bps: 8 | 16;
  photometric: 0 | 1 | 2 | 3;
  /** width × height × spp samples. */
  samples: ArrayLike<number>;
  compression: 1 | 5 | 8 | 32773;
  predictor?: 1 | 2;
  rowsPerStrip: number;
  bigEndian?: boolean;
  /** 768 values: the red, green and blue tables of a palette image. */
  colorMap?: ArrayLike<number>;
  /** The directory before the strips (true) or after them, as PIL and MoNuSeg's files have it. */
  ifdFirst?: boolean;
  /** Overrides the next-directory offset (0: none). */
  nextIfd?: number;
}

/** TIFF's LZW: 9- to 12-bit codes MSB first, clear 256, end 257, the width growing one code early. */
export function lzwEncode(data: Uint8Array): Uint8Array {
  const out: number[] = [];
  let acc = 0, held = 0, width = 9;
  const put = (code: number) => {
    acc = (acc << width) | code;
    held += width;
    while (held >= 8) {
      out.push((acc >>> (held - 8)) & 0xff);
      held -= 8;
    }
    acc &= (1 << held) - 1;
  };
  let dict = new Map<number, number>(), next = 258;
  put(256);
  if (data.length === 0) {
    put(257);
  } else {
    let w = data[0];
    for (let i = 1; i < data.length; i++) {
      const key = w * 256 + data[i];
      const known = dict.get(key);
      if (known !== undefined) {
        w = known;
        continue;
      }
      put(w);
      dict.set(key, next++);
      if (next === 1 << width) width++;
      w = data[i];
      if (next === 4093) { // table nearly full: start over
        put(256);
        dict = new Map();
        next = 258;
        width = 9;
      }
    }
    put(w);
    next++;
    if (next === 1 << width && width < 12) width++;
    put(257);
  }
  if (held > 0) out.push((acc << (8 - held)) & 0xff);
  return Uint8Array.from(out);
}

/** Apple's PackBits: runs of three or more equal bytes as repeats, the rest as literals. */
export function packBits(data: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < data.length;) {
    let run = 1;
    while (i + run < data.length && run < 128 && data[i + run] === data[i]) run++;
    if (run >= 3) {
      out.push(257 - run, data[i]);
      i += run;
      continue;
    }
    let lit = 0;
    while (i + lit < data.length && lit < 128) {
      if (i + lit + 2 < data.length && data[i + lit] === data[i + lit + 1] && data[i + lit] === data[i + lit + 2]) {
        break;
      }
      lit++;
    }
    out.push(lit - 1, ...data.subarray(i, i + lit));
    i += lit;
  }
  return Uint8Array.from(out);
}

/** A baseline strip TIFF written by hand. */
export function tiffFile(spec: TiffSpec): Built {
  const { width, height, spp, bps, rowsPerStrip } = spec;
  const le = !spec.bigEndian;
  // Samples to bytes in the file's order, after the predictor's differencing.
  const rowSamples = width * spp;
  const vals = Array.from(spec.samples);
  if (spec.predictor === 2) {
    for (let y = 0; y < height; y++) {
      for (let i = rowSamples - 1; i >= spp; i--) {
        const a = y * rowSamples + i;
        vals[a] = (vals[a] - vals[a - spp]) & (bps === 8 ? 0xff : 0xffff);
      }
    }
  }
  const raw = new Uint8Array(vals.length * (bps / 8));
  const rv = new DataView(raw.buffer);
  vals.forEach((v, i) => bps === 8 ? (raw[i] = v) : rv.setUint16(2 * i, v, le));
  const strips: Uint8Array[] = [];
  const rowBytes = rowSamples * (bps / 8);
  for (let y = 0; y < height; y += rowsPerStrip) {
    const s = raw.subarray(y * rowBytes, Math.min(height, y + rowsPerStrip) * rowBytes);
    strips.push(
      spec.compression === 1
        ? s
        : spec.compression === 5
        ? lzwEncode(s)
        : spec.compression === 8
        ? new Uint8Array(deflateSync(s))
        : packBits(s),
    );
  }
  const entries: [number, number, number[]][] = [ // tag, type (3 SHORT, 4 LONG), values
    [256, 4, [width]],
    [257, 4, [height]],
    [258, 3, new Array(spp).fill(bps)],
    [259, 3, [spec.compression]],
    [262, 3, [spec.photometric]],
    [273, 4, strips.map(() => 0)], // patched below
    [277, 3, [spp]],
    [278, 4, [rowsPerStrip]],
    [279, 4, strips.map((s) => s.length)],
    [284, 3, [1]],
  ];
  if (spec.predictor) entries.push([317, 3, [spec.predictor]]);
  if (spec.colorMap) entries.push([320, 3, Array.from(spec.colorMap)]);
  entries.sort((a, b) => a[0] - b[0]);
  const ifdSize = 2 + 12 * entries.length + 4;
  const extraSize = entries.reduce((n, [, type, v]) => n + (v.length * (type === 3 ? 2 : 4) > 4 ? v.length * 4 : 0), 0);
  const stripBytes = strips.reduce((n, s) => n + s.length, 0);
  const ifdAt = spec.ifdFirst ? 8 : 8 + stripBytes;
  const stripsAt = spec.ifdFirst ? 8 + ifdSize + extraSize : 8;
  const offsets: number[] = [];
  for (let i = 0, at = stripsAt; i < strips.length; at += strips[i].length, i++) offsets.push(at);
  entries.find(([t]) => t === 273)![2] = offsets;

  const w = new Writer(le);
  w.bytes(le ? [0x49, 0x49] : [0x4d, 0x4d]).uint(42, 2).uint(ifdAt, 4, true);
  const writeStrips = () => strips.forEach((s) => w.bytes(s));
  const writeIfd = () => {
    let extraAt = ifdAt + ifdSize;
    const extras: [number, number[], boolean][] = []; // type, values, whether they are offsets/counts
    w.uint(entries.length, 2, true);
    for (const [tag, type, v] of entries) {
      w.uint(tag, 2).uint(type, 2).uint(v.length, 4, true);
      const size = type === 3 ? 2 : 4;
      if (v.length * size <= 4) {
        if (type === 3) w.uint(v[0], 2, true).uint(v[1] ?? 0, 2);
        else w.uint(v[0], 4, true);
      } else {
        w.uint(extraAt, 4, true);
        extras.push([type, v, tag === 273 || tag === 279]);
        extraAt += v.length * 4; // reserved as if LONG, so SHORT arrays leave padding
      }
    }
    w.uint(spec.nextIfd ?? 0, 4, true);
    for (const [type, v, field] of extras) {
      const start = w.length;
      for (const x of v) w.uint(x, type === 3 ? 2 : 4, field);
      w.bytes(new Uint8Array(v.length * 4 - (w.length - start)));
    }
  };
  if (spec.ifdFirst) {
    writeIfd();
    writeStrips();
  } else {
    writeStrips();
    writeIfd();
  }
  return w.done();
}

// ---------------------------------------------------------------- BMP

/** An uncompressed bottom-up BMP: 24-bit from RGB samples, or 8-bit with `palette` (RGB triples). */
export function bmpFile(width: number, height: number, samples: ArrayLike<number>, palette?: Uint8Array): Built {
  const bpp = palette ? 8 : 24;
  const stride = Math.ceil((width * bpp) / 32) * 4;
  const entries = palette ? palette.length / 3 : 0;
  const dataOffset = 14 + 40 + 4 * entries;
  const w = new Writer(true);
  w.bytes([0x42, 0x4d]).uint(dataOffset + stride * height, 4, true).uint(0, 4).uint(dataOffset, 4, true);
  w.uint(40, 4, true).uint(width, 4, true).uint(height, 4, true).uint(1, 2).uint(bpp, 2, true).uint(0, 4, true);
  w.uint(stride * height, 4, true).uint(2835, 4).uint(2835, 4).uint(entries, 4, true).uint(0, 4);
  for (let k = 0; k < entries; k++) w.bytes([palette![3 * k + 2], palette![3 * k + 1], palette![3 * k], 0]);
  for (let y = height - 1; y >= 0; y--) {
    const row = new Uint8Array(stride);
    for (let x = 0; x < width; x++) {
      if (palette) row[x] = samples[y * width + x];
      else for (let k = 0; k < 3; k++) row[3 * x + k] = samples[(y * width + x) * 3 + 2 - k];
    }
    w.bytes(row);
  }
  return w.done();
}

// ---------------------------------------------------------------- NPY

/** A .npy file (format 1.0, or 2.0 with `version` 2) of `descr` elements; `shape` may be the header's text. */
export function npyFile(descr: string, shape: number[] | string, data: Uint8Array, version = 1): Built {
  const dims = typeof shape === "string" ? shape : shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  const lenBytes = version === 1 ? 2 : 4;
  const pad = (64 - ((8 + lenBytes + header.length + 1) % 64)) % 64;
  header += " ".repeat(pad) + "\n";
  const w = new Writer(true).bytes([0x93, ...enc.encode("NUMPY"), version, 0]);
  w.uint(header.length, lenBytes, true).bytes(enc.encode(header)).bytes(data);
  return w.done();
}

// ---------------------------------------------------------------- XML

/** An ImageScope annotation with the given polygons (each a list of [x, y]). */
export function monusegXml(polygons: [number, number][][]): string {
  const regions = polygons.map((p, i) =>
    `  <Region Id="${i + 1}" Type="0">\n   <Vertices>\n` +
    p.map(([x, y]) => `    <Vertex X="${x}" Y="${y}" Z="0"/>\n`).join("") + "   </Vertices>\n  </Region>\n"
  );
  return `<?xml version="1.0"?>\n<Annotations MicronsPerPixel="0.25">\n <Annotation Id="1">\n <Regions>\n` +
    regions.join("") + " </Regions>\n </Annotation>\n</Annotations>\n";
}

// ---------------------------------------------------------------- safetensors

/** A safetensors file from a header object (JSON) and data; `length` overrides the header length. */
export function safetensorsFile(header: unknown, data: Uint8Array, length?: bigint): Built {
  const text = enc.encode(typeof header === "string" ? header : JSON.stringify(header));
  return new Writer(true).uint(length ?? BigInt(text.length), 8, true).bytes(text).bytes(data).done();
}

// ---------------------------------------------------------------- pickle and .pt

/** A pickle (protocol 2) writer with the opcodes torch.save uses. */
export class Pickler {
  readonly w = new Writer(true);
  #memo = 0;
  constructor() {
    this.w.bytes([0x80, 2]);
  }
  op(...codes: number[]): this {
    this.w.bytes(codes);
    return this;
  }
  int(v: number | bigint): this {
    if (typeof v === "number" && v >= 0 && v < 256) return this.op(0x4b, v);
    if (typeof v === "number" && v >= 0 && v < 65536) return this.op(0x4d).uint16(v);
    if (typeof v === "number" && v >= -(2 ** 31) && v < 2 ** 31) {
      this.op(0x4a);
      this.w.uint(v >>> 0, 4);
      return this;
    }
    // LONG1/LONG4: little-endian two's complement, as few bytes as keep the sign.
    let b = BigInt(v);
    const bytes: number[] = [];
    const done = () => {
      const top = bytes[bytes.length - 1] & 0x80;
      return (b === 0n && !top) || (b === -1n && top);
    };
    do {
      bytes.push(Number(BigInt.asUintN(8, b)));
      b >>= 8n;
    } while (!done());
    if (bytes.length < 256) this.op(0x8a, bytes.length);
    else this.op(0x8b).w.uint(bytes.length, 4, true);
    return this.op(...bytes);
  }
  uint16(v: number): this {
    this.w.uint(v, 2);
    return this;
  }
  str(s: string): this {
    const b = enc.encode(s);
    this.op(0x58);
    this.w.uint(b.length, 4, true).bytes(b);
    return this;
  }
  float(v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, false);
    return this.op(0x47, ...b);
  }
  global(module: string, name: string): this {
    return this.op(0x63).op(...enc.encode(`${module}\n${name}\n`));
  }
  /** Stores the top of the stack in the memo; returns its index. */
  put(): number {
    const k = this.#memo++;
    this.op(0x71, k);
    return k;
  }
  get(k: number): this {
    return this.op(0x68, k);
  }
  mark(): this {
    return this.op(0x28);
  }
  /** collections.OrderedDict() */
  orderedDict(): this {
    return this.global("collections", "OrderedDict").op(0x29, 0x52);
  }
  /** torch._utils._rebuild_tensor_v2 of storage `key` (`numel` elements of `storage`, e.g. FloatStorage). */
  tensor(storage: string, key: string, numel: number, offset: number, size: number[], stride: number[]): this {
    this.global("torch._utils", "_rebuild_tensor_v2").mark();
    this.mark().str("storage").global("torch", storage).str(key).str("cpu").int(numel).op(0x74, 0x51);
    this.int(offset).mark();
    size.forEach((d) => this.int(d));
    this.op(0x74).mark();
    stride.forEach((d) => this.int(d));
    this.op(0x74, 0x89).orderedDict().op(0x74, 0x52);
    return this;
  }
  stop(): Built {
    this.op(0x2e);
    return this.w.done();
  }
}

/** A torch.save-style archive: stored entries under archive/, data.pkl first, CRC-32s correct. */
export function ptZip(pickle: Uint8Array, storages: Record<string, Uint8Array>): Built {
  const entries: [string, Uint8Array][] = [
    ["archive/data.pkl", pickle],
    ["archive/byteorder", enc.encode("little")],
    ...Object.entries(storages).map(([k, v]): [string, Uint8Array] => [`archive/data/${k}`, v]),
    ["archive/version", enc.encode("3\n")],
  ];
  const w = new Writer(true);
  const central: [string, number, number][] = []; // name, local header offset, crc
  for (const [name, data] of entries) {
    const crc = crc32(data), n = enc.encode(name);
    central.push([name, w.length, crc]);
    w.uint(0x04034b50, 4).uint(20, 2).uint(0, 2).uint(0, 2).uint(0, 4).uint(crc, 4);
    w.uint(data.length, 4, true).uint(data.length, 4, true).uint(n.length, 2, true).uint(0, 2, true);
    w.bytes(n).bytes(data);
  }
  const dirAt = w.length;
  entries.forEach(([name, data], i) => {
    const n = enc.encode(name);
    w.uint(0x02014b50, 4).uint(20, 2).uint(20, 2).uint(0, 2).uint(0, 2).uint(0, 4).uint(central[i][2], 4);
    w.uint(data.length, 4, true).uint(data.length, 4, true).uint(n.length, 2, true).uint(0, 2, true);
    w.uint(0, 2, true).uint(0, 2).uint(0, 2).uint(0, 4).uint(central[i][1], 4, true).bytes(n);
  });
  const dirSize = w.length - dirAt;
  w.uint(0x06054b50, 4).uint(0, 2).uint(0, 2).uint(entries.length, 2, true).uint(entries.length, 2, true);
  w.uint(dirSize, 4, true).uint(dirAt, 4, true).uint(0, 2, true);
  return w.done();
}

/** Little-endian float32 bytes. */
export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}
