// TIFF decoding (baseline strips: uncompressed, LZW, Deflate, PackBits; 8- and 16-bit samples;
// gray, RGB(A) and palette), written here so that nothing in a file is trusted before it is
// checked: the first image directory and every value it points at must lie in the file, the
// declared size must pass the pixel limit, the strips must hold enough data to decompress to the
// declared size, and each strip must decode to exactly its rows. A file that falls short is an
// error, never an image padded with zeros. Only the first directory is read, so a chain of
// directories (or one that points at itself) costs nothing.
import { inflateSync } from "node:zlib";
import { checkLimit, type Limits } from "../io/limits.ts";
import {
  checkedImage,
  checkPixels,
  DecodeProblem,
  grayAlphaToRGBA,
  type Image,
  reduce16,
  selectChannels,
} from "./pixels.ts";

/** Bytes per value of the TIFF 6.0 field types; other types are skipped. */
const TYPE_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8 };

const TAG_NAMES: Record<number, string> = {
  256: "ImageWidth",
  257: "ImageLength",
  258: "BitsPerSample",
  259: "Compression",
  262: "PhotometricInterpretation",
  266: "FillOrder",
  273: "StripOffsets",
  277: "SamplesPerPixel",
  278: "RowsPerStrip",
  279: "StripByteCounts",
  284: "PlanarConfiguration",
  317: "Predictor",
  320: "ColorMap",
  339: "SampleFormat",
};

const NONE = 1, LZW = 5, DEFLATE = 8, OLD_DEFLATE = 32946, PACKBITS = 32773;
const COMPRESSION_NAMES: Record<number, string> = {
  [NONE]: "none",
  [LZW]: "LZW",
  [DEFLATE]: "Deflate",
  [OLD_DEFLATE]: "Deflate",
  [PACKBITS]: "PackBits",
};

// The most bytes one byte of compressed strip can become: an LZW code (at least 9 bits) stands for
// at most 4096 bytes, a PackBits pair for 128, deflate expands at most 1032:1. Strips holding less
// than the declared size / ratio are rejected before the pixels are allocated.
const MAX_RATIO: Record<number, number> = {
  [NONE]: 1,
  [LZW]: Math.ceil((4096 * 8) / 9),
  [DEFLATE]: 1032,
  [OLD_DEFLATE]: 1032,
  [PACKBITS]: 64,
};
// Deflate data beyond a strip's rows is ignored up to this much.
const EXTRA_DATA = 65536;

interface Field {
  tag: number;
  type: number;
  count: number;
  /** Where the values are: in the entry itself when they fit in 4 bytes, else at an offset. */
  at: number;
}

/** The first image directory's fields, and readers of their values that check every bound. */
class Directory {
  readonly fields = new Map<number, Field>();
  readonly view: DataView;

  constructor(readonly bytes: Uint8Array, readonly le: boolean) {
    const n = bytes.length;
    if (n < 8) throw new DecodeProblem(`truncated TIFF header (${n} bytes)`);
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const magic = this.view.getUint16(2, le);
    if (magic === 43) throw new DecodeProblem("BigTIFF files are not supported");
    if (magic !== 42) throw new DecodeProblem(`bad TIFF magic number ${magic}`);
    const ifd = this.view.getUint32(4, le);
    if (ifd < 8) throw new DecodeProblem(`directory offset ${ifd} points into the header`);
    if (ifd + 2 > n) throw new DecodeProblem(`truncated TIFF: directory at byte ${ifd}, file has ${n} bytes`);
    const count = this.view.getUint16(ifd, le);
    if (count === 0) throw new DecodeProblem("TIFF has an empty image directory");
    if (ifd + 2 + 12 * count > n) {
      throw new DecodeProblem(
        `truncated TIFF: directory of ${count} entries at byte ${ifd} ends at byte ${
          ifd + 2 + 12 * count
        }, file has ${n} bytes`,
      );
    }
    for (let i = 0; i < count; i++) {
      const e = ifd + 2 + 12 * i;
      const tag = this.view.getUint16(e, le), type = this.view.getUint16(e + 2, le);
      const fieldCount = this.view.getUint32(e + 4, le);
      const size = TYPE_SIZE[type];
      // Readers skip fields of unknown types; the first of repeated tags counts.
      if (size === undefined || this.fields.has(tag)) continue;
      const at = size * fieldCount <= 4 ? e + 8 : this.view.getUint32(e + 8, le);
      this.fields.set(tag, { tag, type, count: fieldCount, at });
    }
  }

  /** The first `max` (at most) unsigned integer values of a field, or undefined when it is absent. */
  values(tag: number, max: number): number[] | undefined {
    const f = this.fields.get(tag);
    if (f === undefined) return undefined;
    const name = TAG_NAMES[tag] ?? `tag ${tag}`;
    if (f.type !== 1 && f.type !== 3 && f.type !== 4) {
      throw new DecodeProblem(`TIFF field ${name} has type ${f.type}, not an unsigned integer`);
    }
    if (f.count === 0) throw new DecodeProblem(`TIFF field ${name} has no values`);
    const size = TYPE_SIZE[f.type], n = Math.min(f.count, max);
    if (f.at + size * n > this.bytes.length) {
      throw new DecodeProblem(
        `truncated TIFF: field ${name} (${f.count} values at byte ${f.at}) runs past the end of the file (${this.bytes.length} bytes)`,
      );
    }
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const p = f.at + size * i;
      out[i] = size === 1
        ? this.bytes[p]
        : size === 2
        ? this.view.getUint16(p, this.le)
        : this.view.getUint32(p, this.le);
    }
    return out;
  }

  one(tag: number, fallback?: number): number {
    const v = this.values(tag, 1)?.[0] ?? fallback;
    if (v === undefined) throw new DecodeProblem(`TIFF directory has no ${TAG_NAMES[tag]}`);
    return v;
  }

  count(tag: number): number {
    return this.fields.get(tag)?.count ?? 0;
  }
}

/**
 * Decodes TIFF bytes (the first image) to 8-bit pixels: gray, RGB or RGBA (gray + alpha becomes
 * RGBA, WhiteIsZero is inverted, further extra samples are dropped), a palette image to its
 * colours or with `paletteIndices` to the raw indices. Throws a DecodeProblem for bad or
 * unsupported data, a LimitError for a size over `limits`.
 */
export function decodeTiff(bytes: Uint8Array, paletteIndices: boolean, limits: Required<Limits>): Image {
  const dir = new Directory(bytes, bytes[0] === 0x49);
  if (!dir.fields.has(256) || !dir.fields.has(257)) throw new DecodeProblem("TIFF directory has no image size");
  const width = dir.one(256), height = dir.one(257);
  checkPixels(limits, width, height);
  const spp = dir.one(277, 1);
  if (spp < 1) throw new DecodeProblem(`invalid TIFF SamplesPerPixel ${spp}`);
  const bps = dir.values(258, spp) ?? [1];
  const depth = bps[0];
  const compression = dir.one(259, 1);
  const photometric = dir.one(262, 1);
  if (!(compression in COMPRESSION_NAMES)) {
    throw new DecodeProblem(`unsupported TIFF compression ${compression} (supported: none, LZW, Deflate, PackBits)`);
  }
  if (bps.some((b) => b !== depth) || (depth !== 8 && depth !== 16)) {
    throw new DecodeProblem(`unsupported TIFF bit depth ${bps.join("/")} (supported: 8 and 16)`);
  }
  if (dir.one(284, 1) !== 1) throw new DecodeProblem("unsupported planar (non-interleaved) TIFF");
  if (dir.fields.has(322) || dir.fields.has(324)) throw new DecodeProblem("unsupported tiled TIFF");
  if (dir.one(266, 1) !== 1) throw new DecodeProblem("unsupported TIFF FillOrder (bits stored LSB first)");
  if ((dir.values(339, spp) ?? [1]).some((f) => f !== 1)) {
    throw new DecodeProblem("unsupported TIFF SampleFormat (only unsigned integers are read)");
  }
  if (![0, 1, 2, 3].includes(photometric)) throw new DecodeProblem(`unsupported TIFF photometric ${photometric}`);
  if (photometric === 2 && spp < 3) throw new DecodeProblem(`RGB TIFF with ${spp} samples per pixel`);
  // The predictor belongs to LZW and Deflate; libtiff ignores it for other compressions.
  const predictor = compression === LZW || compression === DEFLATE || compression === OLD_DEFLATE ? dir.one(317, 1) : 1;
  if (predictor !== 1 && predictor !== 2) {
    throw new DecodeProblem(`unsupported TIFF predictor ${predictor} (supported: none, horizontal)`);
  }
  let colorMap: number[] | undefined;
  if (photometric === 3) {
    if (spp !== 1 || depth !== 8 || dir.count(320) !== 768) {
      throw new DecodeProblem("palette TIFF without an 8-bit colour map");
    }
    colorMap = dir.values(320, 768);
  }

  const rowBytes = width * spp * (depth / 8);
  const total = rowBytes * height;
  checkLimit(limits, "maxBytes", total, `a TIFF of ${total} bytes of samples`);
  const rowsPerStrip = Math.min(dir.one(278, 0xffffffff), height);
  if (rowsPerStrip < 1) throw new DecodeProblem("invalid TIFF RowsPerStrip 0");
  const strips = Math.ceil(height / rowsPerStrip);
  if (!dir.fields.has(273) || !dir.fields.has(279)) throw new DecodeProblem("TIFF strip table missing");
  for (const tag of [273, 279]) {
    if (dir.count(tag) < strips) {
      throw new DecodeProblem(`TIFF ${TAG_NAMES[tag]} lists ${dir.count(tag)} of the ${strips} strips the image needs`);
    }
  }
  const offsets = dir.values(273, strips)!, counts = dir.values(279, strips)!;
  let stored = 0;
  for (let i = 0; i < strips; i++) {
    if (offsets[i] + counts[i] > bytes.length) {
      throw new DecodeProblem(
        `truncated TIFF: strip ${i} ends at byte ${offsets[i] + counts[i]}, file has ${bytes.length} bytes`,
      );
    }
    stored += counts[i];
  }
  if (stored * MAX_RATIO[compression] < total) {
    throw new DecodeProblem(
      `truncated TIFF: its strips hold ${stored} bytes, which ${
        COMPRESSION_NAMES[compression]
      } cannot turn into the ${total} bytes of a ${width}x${height} image`,
    );
  }

  const raw = new Uint8Array(total);
  for (let i = 0; i < strips; i++) {
    const rows = Math.min(rowsPerStrip, height - i * rowsPerStrip);
    const dst = raw.subarray(i * rowsPerStrip * rowBytes, (i * rowsPerStrip + rows) * rowBytes);
    const got = decodeStrip(compression, bytes.subarray(offsets[i], offsets[i] + counts[i]), dst);
    if (got < dst.length) {
      throw new DecodeProblem(`truncated or corrupt TIFF: strip ${i} decodes to ${got} of its ${dst.length} bytes`);
    }
  }

  let samples: Uint8Array;
  if (depth === 8) {
    if (predictor === 2) undoPredictor(raw, width, height, spp);
    samples = raw;
  } else {
    const v = new DataView(raw.buffer), wide = new Uint16Array(total / 2);
    for (let i = 0; i < wide.length; i++) wide[i] = v.getUint16(2 * i, dir.le);
    if (predictor === 2) undoPredictor(wide, width, height, spp);
    samples = reduce16(wide);
  }
  if (colorMap !== undefined) {
    if (paletteIndices) return checkedImage(width, height, 1, samples);
    const out = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) {
      for (let k = 0; k < 3; k++) out[3 * i + k] = Math.round(colorMap[k * 256 + samples[i]] / 257);
    }
    return checkedImage(width, height, 3, out);
  }
  if (photometric === 0) samples = samples.map((v) => 255 - v); // WhiteIsZero
  // Extra samples beyond RGBA (or gray + alpha) are dropped; gray + alpha becomes RGBA.
  const keep = spp >= 4 && photometric === 2 ? 4 : spp >= 3 && photometric === 2 ? 3 : spp >= 2 ? 2 : 1;
  let data = keep === spp ? samples : selectChannels(samples, spp, keep);
  if (keep === 2) data = grayAlphaToRGBA(data);
  return checkedImage(width, height, keep === 2 ? 4 : keep, data);
}

/** Decompresses one strip into `dst` (exactly its rows); returns how many bytes it filled. */
function decodeStrip(compression: number, src: Uint8Array, dst: Uint8Array): number {
  switch (compression) {
    case NONE:
      dst.set(src.subarray(0, dst.length));
      return Math.min(src.length, dst.length);
    case PACKBITS:
      return unpackBits(src, dst);
    case LZW:
      return decodeLzw(src, dst);
    default: {
      let out: Uint8Array;
      try {
        out = inflateSync(src, { maxOutputLength: dst.length + EXTRA_DATA });
      } catch (e) {
        throw new DecodeProblem(`corrupt or truncated Deflate strip (${(e as Error).message})`);
      }
      dst.set(out.subarray(0, dst.length));
      return Math.min(out.length, dst.length);
    }
  }
}

/** PackBits (Apple's run-length code, TIFF compression 32773). Runs past the strip's end are cut. */
function unpackBits(src: Uint8Array, dst: Uint8Array): number {
  let i = 0, o = 0;
  while (o < dst.length && i < src.length) {
    const n = src[i++];
    if (n < 128) { // n + 1 literal bytes
      const take = Math.min(n + 1, src.length - i, dst.length - o);
      dst.set(src.subarray(i, i + take), o);
      o += take;
      if (take < n + 1 && o < dst.length) return o; // the data ends inside the literal run
      i += n + 1;
    } else if (n > 128) { // 257 - n copies of the next byte
      if (i >= src.length) return o;
      const take = Math.min(257 - n, dst.length - o);
      dst.fill(src[i++], o, o + take);
      o += take;
    } // 128 is a no-op
  }
  return o;
}

/**
 * TIFF's LZW (codes of 9 to 12 bits, most significant bit first, 256 = clear, 257 = end, the code
 * width growing one code early). Decodes until `dst` is full, the end code or the end of the data.
 */
function decodeLzw(src: Uint8Array, dst: Uint8Array): number {
  // Streams from libtiff before 1996 ("old-style", LSB-first) start with a zero byte and an odd one.
  if (src.length >= 2 && src[0] === 0 && (src[1] & 1)) throw new DecodeProblem("unsupported old-style LZW strip");
  const prefix = new Int16Array(4096), suffix = new Uint8Array(4096), first = new Uint8Array(4096);
  const length = new Uint16Array(4096);
  for (let i = 0; i < 256; i++) {
    suffix[i] = first[i] = i;
    length[i] = 1;
  }
  let acc = 0, held = 0, at = 0; // bits read ahead, how many, next byte
  let width = 9, next = 258, prev = -1, o = 0;
  while (o < dst.length) {
    while (held < width && at < src.length) {
      acc = ((acc & 0xffff) << 8) | src[at++];
      held += 8;
    }
    if (held < width) break; // the data ends
    const code = (acc >>> (held - width)) & ((1 << width) - 1);
    held -= width;
    if (code === 257) break;
    if (code === 256) {
      width = 9;
      next = 258;
      prev = -1;
      continue;
    }
    if (prev === -1) {
      if (code > 255) throw new DecodeProblem(`corrupt LZW strip: code ${code} right after a clear code`);
    } else if (code > next || (code === next && next >= 4096)) {
      throw new DecodeProblem(`corrupt LZW strip: code ${code} used before it is defined`);
    } else if (next < 4096) {
      // The new entry is the previous string plus the first byte of this one (of itself when
      // this code is the entry being made).
      prefix[next] = prev;
      suffix[next] = code === next ? first[prev] : first[code];
      first[next] = first[prev];
      length[next] = length[prev] + 1;
      next++;
      if (next === (1 << width) - 1 && width < 12) width++;
    }
    // Write the string of `code` backwards from its last byte, cut at the end of `dst`.
    const n = length[code];
    let c = code;
    for (let k = n - 1; k >= 0; k--) {
      if (o + k < dst.length) dst[o + k] = suffix[c];
      c = prefix[c];
    }
    o = Math.min(o + n, dst.length);
    prev = code;
  }
  return o;
}

/** Undoes horizontal differencing (Predictor 2) in place: each sample was stored minus its left neighbour's. */
function undoPredictor(a: Uint8Array | Uint16Array, width: number, height: number, spp: number): void {
  const row = width * spp;
  for (let y = 0; y < height; y++) {
    const r = y * row;
    for (let i = r + spp; i < r + row; i++) a[i] += a[i - spp];
  }
}
