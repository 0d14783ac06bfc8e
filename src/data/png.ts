// PNG decoding, written here rather than left to a library so that every length, size and checksum
// is checked before it is used: the declared size against the pixel limit before anything is
// allocated, every chunk against the file and its CRC, the inflated data against exactly the
// size the header implies (never zero-filled when short), and a palette image against its PLTE.
// Colour types 0, 2, 3, 4 and 6 at every depth the format allows, Adam7 interlacing included.
import { crc32, inflateSync } from "node:zlib";
import { checkLimit, type Limits } from "../io/limits.ts";
import { checkedImage, checkPixels, DecodeProblem, grayAlphaToRGBA, type Image, reduce16 } from "./pixels.ts";

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Samples per pixel and the bit depths the format allows, by colour type. */
const COLOUR_TYPES: Record<number, { channels: number; depths: number[] }> = {
  0: { channels: 1, depths: [1, 2, 4, 8, 16] },
  2: { channels: 3, depths: [8, 16] },
  3: { channels: 1, depths: [1, 2, 4, 8] },
  4: { channels: 2, depths: [8, 16] },
  6: { channels: 4, depths: [8, 16] },
};

/** Adam7's seven passes: first column, first row, column step, row step. */
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];
const NOT_INTERLACED = [[0, 0, 1, 1]];

// Deflate cannot expand data by more than 1032:1 (a 258-byte match per two bits), so compressed
// data too short for the declared size is rejected before anything is inflated.
const DEFLATE_MAX_RATIO = 1032;
// Image data beyond what the image needs is ignored, as libpng does, up to this much.
const EXTRA_DATA = 65536;

interface Header {
  width: number;
  height: number;
  depth: number;
  colourType: number;
  interlaced: boolean;
}

/** One pass of the image (the whole image when not interlaced): its size and where its rows lie. */
interface Pass {
  x0: number;
  y0: number;
  dx: number;
  dy: number;
  width: number;
  height: number;
  rowBytes: number;
  /** Offset of the pass's first filter byte in the inflated data. */
  at: number;
}

const truncated = (what: string) => new DecodeProblem(`truncated or corrupt data: ${what}`);

/**
 * Decodes PNG bytes to 8-bit pixels: gray, RGB or RGBA (gray + alpha becomes RGBA; a palette image
 * gives its colours, RGBA when a tRNS chunk gives alpha, or with `paletteIndices` the raw indices).
 * 16-bit samples are rounded to 8 bits. Throws a DecodeProblem for bad data, a LimitError for a
 * size over `limits`.
 */
export function decodePng(bytes: Uint8Array, paletteIndices: boolean, limits: Required<Limits>): Image {
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) throw new DecodeProblem("bad PNG signature");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let header: Header | null = null;
  let palette: Uint8Array | null = null, alpha: Uint8Array | null = null;
  const idat: Uint8Array[] = [];
  let idatBytes = 0, idatEnded = false;
  for (let pos = 8;;) {
    if (pos + 12 > bytes.length) throw truncated(`the file ends at byte ${bytes.length} before the IEND chunk`);
    const length = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    if (!/^[A-Za-z]{4}$/.test(type)) throw truncated(`invalid chunk type ${JSON.stringify(type)} at byte ${pos}`);
    if (length > 0x7fffffff || pos + 12 + length > bytes.length) {
      throw truncated(`chunk ${type} at byte ${pos} declares ${length} bytes, the file ends at byte ${bytes.length}`);
    }
    const data = bytes.subarray(pos + 8, pos + 8 + length);
    if (crc32(bytes.subarray(pos + 4, pos + 8 + length)) !== view.getUint32(pos + 8 + length)) {
      throw truncated(`chunk ${type} at byte ${pos} fails its CRC check`);
    }
    if (header === null && type !== "IHDR") throw new DecodeProblem(`the first chunk is ${type}, not IHDR`);
    if (idat.length > 0 && type !== "IDAT") idatEnded = true;
    pos += 12 + length;
    if (type === "IEND") break;
    switch (type) {
      case "IHDR":
        if (header !== null) throw new DecodeProblem("a second IHDR chunk");
        header = readHeader(data, limits);
        break;
      case "PLTE":
        if (palette !== null || idat.length > 0) throw new DecodeProblem("PLTE chunk repeated or after the image data");
        if (length % 3 !== 0 || length === 0 || length > 768) {
          throw new DecodeProblem(`PLTE chunk of ${length} bytes (expected 1 to 256 entries of 3 bytes)`);
        }
        // Gray images may not have a palette and truecolour ones only suggest one: both ignore it.
        if (header!.colourType === 3) palette = data;
        break;
      case "tRNS":
        // Only a palette's alpha is used; the colour key of gray and RGB images is not.
        if (header!.colourType === 3) {
          if (palette === null || length > palette.length / 3 || idat.length > 0) {
            throw new DecodeProblem(`tRNS chunk of ${length} entries before PLTE, after IDAT or longer than PLTE`);
          }
          alpha = data;
        }
        break;
      case "IDAT":
        if (idatEnded) throw new DecodeProblem("IDAT chunks are not consecutive");
        idat.push(data);
        idatBytes += length;
        break;
      default:
        // An unknown critical chunk (upper-case first letter) changes how the image is read.
        if (type.charCodeAt(0) < 0x61) throw new DecodeProblem(`unknown critical chunk ${type}`);
    }
  }
  const h = header!;
  if (h.colourType === 3 && palette === null) throw new DecodeProblem("palette image (colour type 3) without PLTE");
  if (idat.length === 0) throw new DecodeProblem("no IDAT chunk");

  const channels = COLOUR_TYPES[h.colourType].channels;
  const passes: Pass[] = [];
  let rawBytes = 0;
  for (const [x0, y0, dx, dy] of h.interlaced ? ADAM7 : NOT_INTERLACED) {
    const width = Math.ceil((h.width - x0) / dx), height = Math.ceil((h.height - y0) / dy);
    if (width <= 0 || height <= 0) continue; // an empty pass has no rows, not even filter bytes
    const rowBytes = Math.ceil((width * channels * h.depth) / 8);
    passes.push({ x0, y0, dx, dy, width, height, rowBytes, at: rawBytes });
    rawBytes += height * (1 + rowBytes);
  }
  checkLimit(limits, "maxBytes", rawBytes, `an image of ${rawBytes} bytes of decompressed data`);
  if (rawBytes > idatBytes * DEFLATE_MAX_RATIO + DEFLATE_MAX_RATIO) {
    throw truncated(`${idatBytes} bytes of IDAT data cannot inflate to the ${rawBytes} bytes the image needs`);
  }
  const raw = inflate(concat(idat, idatBytes), rawBytes);
  const bpp = Math.max(1, (channels * h.depth) / 8);
  for (const p of passes) unfilter(raw, p, bpp);
  const samples = h.depth === 16
    ? new Uint16Array(h.width * h.height * channels)
    : new Uint8Array(h.width * h.height * channels);
  for (const p of passes) readPass(raw, p, h, channels, samples);
  return toImage(samples, h, channels, palette, alpha, paletteIndices);
}

function readHeader(data: Uint8Array, limits: Required<Limits>): Header {
  if (data.length !== 13) throw new DecodeProblem(`IHDR chunk of ${data.length} bytes, not 13`);
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const width = v.getUint32(0), height = v.getUint32(4);
  const [depth, colourType, compression, filter, interlace] = data.subarray(8);
  if (width === 0 || height === 0 || width > 0x7fffffff || height > 0x7fffffff) {
    throw new DecodeProblem(`invalid size ${width}x${height}`);
  }
  const ct = COLOUR_TYPES[colourType];
  if (ct === undefined) throw new DecodeProblem(`invalid colour type ${colourType}`);
  if (!ct.depths.includes(depth)) throw new DecodeProblem(`invalid bit depth ${depth} for colour type ${colourType}`);
  if (compression !== 0 || filter !== 0 || interlace > 1) {
    throw new DecodeProblem(`invalid compression, filter or interlace method ${compression}/${filter}/${interlace}`);
  }
  checkPixels(limits, width, height);
  return { width, height, depth, colourType, interlaced: interlace === 1 };
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Inflates a zlib stream that must give at least `need` bytes; more than a little extra is an error. */
function inflate(data: Uint8Array, need: number): Uint8Array {
  let out: Uint8Array;
  try {
    out = inflateSync(data, { maxOutputLength: need + EXTRA_DATA });
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ERR_BUFFER_TOO_LARGE") {
      throw new DecodeProblem(`the compressed data inflates to more than the ${need} bytes the image needs`);
    }
    if (code === "Z_BUF_ERROR") throw truncated("the compressed data ends early");
    throw truncated(`the compressed data does not inflate (${(e as Error).message})`);
  }
  if (out.length < need) throw truncated(`the compressed data inflates to ${out.length} of the ${need} bytes needed`);
  return out;
}

/** Undoes the per-row filters of one pass in place. */
function unfilter(raw: Uint8Array, p: Pass, bpp: number): void {
  const n = p.rowBytes;
  for (let y = 0; y < p.height; y++) {
    const f = p.at + y * (n + 1), row = f + 1, prior = row - (n + 1);
    const filter = raw[f];
    const hasPrior = y > 0;
    switch (filter) {
      case 0:
        break;
      case 1:
        for (let i = bpp; i < n; i++) raw[row + i] = (raw[row + i] + raw[row + i - bpp]) & 0xff;
        break;
      case 2:
        if (hasPrior) { for (let i = 0; i < n; i++) raw[row + i] = (raw[row + i] + raw[prior + i]) & 0xff; }
        break;
      case 3:
        for (let i = 0; i < n; i++) {
          const left = i >= bpp ? raw[row + i - bpp] : 0, up = hasPrior ? raw[prior + i] : 0;
          raw[row + i] = (raw[row + i] + ((left + up) >> 1)) & 0xff;
        }
        break;
      case 4:
        for (let i = 0; i < n; i++) {
          const a = i >= bpp ? raw[row + i - bpp] : 0, b = hasPrior ? raw[prior + i] : 0;
          const c = i >= bpp && hasPrior ? raw[prior + i - bpp] : 0;
          const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
          raw[row + i] = (raw[row + i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)) & 0xff;
        }
        break;
      default:
        throw new DecodeProblem(`invalid filter type ${filter} in row ${y}`);
    }
  }
}

/** Copies one pass's samples (unpacked to one per element) to their places in the image. */
function readPass(raw: Uint8Array, p: Pass, h: Header, channels: number, out: Uint8Array | Uint16Array): void {
  const depth = h.depth, perRow = p.width * channels, mask = (1 << depth) - 1;
  for (let y = 0; y < p.height; y++) {
    const row = p.at + y * (p.rowBytes + 1) + 1;
    const base = (p.y0 + y * p.dy) * h.width * channels;
    for (let j = 0; j < perRow; j++) {
      const px = (j / channels) | 0, k = j - px * channels;
      const at = base + (p.x0 + px * p.dx) * channels + k;
      if (depth === 8) out[at] = raw[row + j];
      else if (depth === 16) out[at] = (raw[row + 2 * j] << 8) | raw[row + 2 * j + 1];
      else {
        const bit = j * depth;
        out[at] = (raw[row + (bit >> 3)] >> (8 - depth - (bit & 7))) & mask;
      }
    }
  }
}

function toImage(
  samples: Uint8Array | Uint16Array,
  h: Header,
  channels: number,
  palette: Uint8Array | null,
  alpha: Uint8Array | null,
  paletteIndices: boolean,
): Image {
  const { width, height, depth } = h;
  if (palette !== null) {
    const idx = samples as Uint8Array;
    if (paletteIndices) return checkedImage(width, height, 1, idx);
    const entries = palette.length / 3, ch = alpha ? 4 : 3;
    const out = new Uint8Array(idx.length * ch);
    for (let i = 0; i < idx.length; i++) {
      const k = idx[i];
      if (k >= entries) throw new DecodeProblem(`palette index ${k} out of range (${entries} entries)`);
      out[i * ch] = palette[3 * k];
      out[i * ch + 1] = palette[3 * k + 1];
      out[i * ch + 2] = palette[3 * k + 2];
      if (alpha) out[i * ch + 3] = k < alpha.length ? alpha[k] : 255;
    }
    return checkedImage(width, height, ch, out);
  }
  let data: Uint8Array;
  if (depth === 16) data = reduce16(samples);
  else if (depth === 8) data = samples as Uint8Array;
  else {
    // Low-depth gray: stretch 0..2^d-1 to 0..255 as libpng's expansion does (exact for 1, 2, 4 bits).
    const scale = 255 / ((1 << depth) - 1);
    data = (samples as Uint8Array).map((v) => v * scale);
  }
  if (channels === 2) return checkedImage(width, height, 4, grayAlphaToRGBA(data));
  return checkedImage(width, height, channels, data);
}
