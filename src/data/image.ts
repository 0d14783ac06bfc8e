// Image files <-> 8-bit HWC pixel arrays: PNG, JPEG and TIFF decoding (format found by magic bytes,
// not by extension, since datasets misname files), atomic PNG writing, and channel conversion.
import { decode as decodePngRaw, encode as encodePngRaw } from "fast-png";
import jpeg from "jpeg-js";
import UTIF from "utif2";

/** An 8-bit image, pixels row-major with interleaved channels (HWC). */
export interface Image {
  width: number;
  height: number;
  channels: 1 | 3 | 4;
  data: Uint8Array;
}

export type ImageFormat = "png" | "jpeg" | "tiff";

export interface ReadOptions {
  /** Palette images: return the raw palette indices as a 1-channel image (label maps), not colours. */
  paletteIndices?: boolean;
}

/** A file that cannot be read as an image; the message starts with the file's path. */
export class ImageError extends Error {
  constructor(readonly path: string, problem: string, options?: ErrorOptions) {
    super(`${path}: ${problem}`, options);
    this.name = "ImageError";
  }
}

/** The format named by the file's first bytes, or null. */
export function detectFormat(bytes: Uint8Array): ImageFormat | null {
  const b = bytes;
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return "png";
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  if (b.length >= 4 && b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0x00) return "tiff";
  if (b.length >= 4 && b[0] === 0x4d && b[1] === 0x4d && b[2] === 0x00 && b[3] === 0x2a) return "tiff";
  return null;
}

/** Reads and decodes an image file. */
export async function readImage(path: string, opts: ReadOptions = {}): Promise<Image> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new ImageError(path, `cannot read file (${(e as Error).message})`, { cause: e });
  }
  return decodeImage(bytes, path, opts);
}

/** Decodes image bytes; `name` (usually the path) heads every error message. */
export function decodeImage(bytes: Uint8Array, name = "<bytes>", opts: ReadOptions = {}): Image {
  if (bytes.length === 0) throw new ImageError(name, "empty file");
  const format = detectFormat(bytes);
  if (format === null) {
    const head = Array.from(bytes.subarray(0, 8), (v) => v.toString(16).padStart(2, "0")).join(" ");
    throw new ImageError(name, `unknown image format (first bytes ${head}; expected PNG, JPEG or TIFF)`);
  }
  let image: Image;
  try {
    image = format === "png" ? decodePng(bytes, opts) : format === "jpeg" ? decodeJpeg(bytes) : decodeTiff(bytes, opts);
  } catch (e) {
    const kind = format.toUpperCase();
    // Problems the helpers below detect themselves say what they are; anything the decoder
    // libraries throw means the bytes do not parse.
    if (e instanceof DecodeProblem) throw new ImageError(name, `${kind}: ${e.message}`, { cause: e });
    const err = e as Error;
    const detail = err.message + (err.cause instanceof Error ? ` (${err.cause.message})` : "");
    throw new ImageError(name, `corrupt or truncated ${kind} data: ${detail}`, { cause: e });
  }
  return image;
}

/** Thrown by the format helpers for problems they detect; decodeImage adds the file's name. */
class DecodeProblem extends Error {}

function checkedImage(width: number, height: number, channels: number, data: Uint8Array): Image {
  if (channels !== 1 && channels !== 3 && channels !== 4) {
    throw new DecodeProblem(`unsupported channel count ${channels}`);
  }
  if (!(width > 0 && height > 0)) throw new DecodeProblem(`invalid size ${width}x${height}`);
  if (data.length !== width * height * channels) {
    throw new DecodeProblem(
      `decoded ${data.length} bytes, expected ${width * height * channels} for ${width}x${height}x${channels}`,
    );
  }
  return { width, height, channels, data };
}

// Unpacks 1/2/4-bit samples (rows padded to whole bytes, as in PNG and TIFF) into one byte each.
function unpackBits(packed: ArrayLike<number>, width: number, height: number, depth: number): Uint8Array {
  const rowBytes = Math.ceil((width * depth) / 8);
  if (packed.length < rowBytes * height) throw new DecodeProblem(`pixel data too short for ${width}x${height}`);
  const out = new Uint8Array(width * height);
  const perByte = 8 / depth, mask = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const byte = packed[y * rowBytes + Math.floor(x / perByte)];
      out[y * width + x] = (byte >> (8 - depth * (1 + (x % perByte)))) & mask;
    }
  }
  return out;
}

// 16 -> 8 bit by rounding v * 255 / 65535, so 0 -> 0, 65535 -> 255 and k * 257 -> k exactly.
function reduce16(v: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = Math.round(v[i] / 257);
  return out;
}

function decodePng(bytes: Uint8Array, opts: ReadOptions): Image {
  const png = decodePngRaw(bytes, { checkCrc: true });
  const { width, height, depth } = png;
  const expected = width * height * png.channels;
  if (png.palette) {
    const idx = depth === 8 ? Uint8Array.from(png.data) : unpackBits(png.data, width, height, depth);
    if (idx.length !== width * height) {
      throw new DecodeProblem(`palette data has ${idx.length} of ${width * height} pixels`);
    }
    if (opts.paletteIndices) return checkedImage(width, height, 1, idx);
    const pal = png.palette;
    const ch = pal[0]?.length === 4 ? 4 : 3; // 4 when a tRNS chunk gave the entries alpha
    const out = new Uint8Array(width * height * ch);
    for (let i = 0; i < idx.length; i++) {
      const c = pal[idx[i]];
      if (!c) throw new DecodeProblem(`palette index ${idx[i]} out of range (${pal.length} entries)`);
      for (let k = 0; k < ch; k++) out[i * ch + k] = c[k];
    }
    return checkedImage(width, height, ch, out);
  }
  let data: Uint8Array;
  if (depth === 16) data = reduce16(png.data);
  else if (depth === 8) data = png.data instanceof Uint8Array ? png.data : Uint8Array.from(png.data);
  else if (png.channels === 1) {
    // Low-depth grayscale: stretch 0..2^d-1 to 0..255 as libpng's expansion does.
    const raw = unpackBits(png.data, width, height, depth);
    const scale = 255 / ((1 << depth) - 1);
    data = raw.map((v) => v * scale);
  } else throw new DecodeProblem(`unsupported bit depth ${depth} with ${png.channels} channels`);
  if (data.length < expected) throw new DecodeProblem(`pixel data has ${data.length} of ${expected} samples`);
  data = data.subarray(0, expected);
  if (png.channels === 2) return checkedImage(width, height, 4, grayAlphaToRGBA(data));
  return checkedImage(width, height, png.channels, data);
}

function grayAlphaToRGBA(ga: Uint8Array): Uint8Array {
  const n = ga.length / 2, out = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    out[4 * i] = out[4 * i + 1] = out[4 * i + 2] = ga[2 * i];
    out[4 * i + 3] = ga[2 * i + 1];
  }
  return out;
}

function decodeJpeg(bytes: Uint8Array): Image {
  // tolerantDecoding off: a cut or damaged scan should fail, not come back half grey.
  const j = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false });
  // jpeg-js always returns RGB (grayscale JPEGs replicated to three equal channels).
  return checkedImage(j.width, j.height, 3, j.data);
}

const TIFF_COMPRESSION: Record<number, string> = {
  1: "none",
  5: "LZW",
  8: "Deflate",
  32946: "Deflate",
  32773: "PackBits",
};

function tag(ifd: Record<string, unknown>, id: number): number[] | undefined {
  const v = ifd[`t${id}`];
  return Array.isArray(v) ? v as number[] : undefined;
}

function decodeTiff(bytes: Uint8Array, opts: ReadOptions): Image {
  const le = bytes[0] === 0x49;
  if (bytes.length < 8) throw new DecodeProblem(`truncated TIFF header (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ifdOffset = view.getUint32(4, le);
  // utif2 reads past the end silently (undefined bytes become zeros), so bounds are checked here.
  if (ifdOffset + 2 > bytes.length) {
    throw new DecodeProblem(`truncated TIFF: directory at byte ${ifdOffset}, file has ${bytes.length} bytes`);
  }
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const ifd = UTIF.decode(buf)[0] as unknown as (Record<string, unknown> & UTIF.IFD) | undefined;
  if (!ifd) throw new DecodeProblem("TIFF has no image directory");
  const width = tag(ifd, 256)?.[0], height = tag(ifd, 257)?.[0];
  if (width === undefined || height === undefined) throw new DecodeProblem("TIFF directory has no image size");
  const bps = tag(ifd, 258) ?? [1];
  const spp = tag(ifd, 277)?.[0] ?? 1;
  const compression = tag(ifd, 259)?.[0] ?? 1;
  const photometric = tag(ifd, 262)?.[0] ?? 1;
  const depth = bps[0];
  if (!(compression in TIFF_COMPRESSION)) {
    throw new DecodeProblem(`unsupported TIFF compression ${compression} (supported: none, LZW, Deflate, PackBits)`);
  }
  if (bps.some((b) => b !== depth) || (depth !== 8 && depth !== 16)) {
    throw new DecodeProblem(`unsupported TIFF bit depth ${bps.join("/")} (supported: 8 and 16)`);
  }
  if ((tag(ifd, 284)?.[0] ?? 1) !== 1) throw new DecodeProblem("unsupported planar (non-interleaved) TIFF");
  if (tag(ifd, 322)) throw new DecodeProblem("unsupported tiled TIFF");
  if (![0, 1, 2, 3].includes(photometric)) throw new DecodeProblem(`unsupported TIFF photometric ${photometric}`);
  const offsets = tag(ifd, 273), counts = tag(ifd, 279);
  if (!offsets || !counts || offsets.length !== counts.length) throw new DecodeProblem("TIFF strip table missing");
  for (let i = 0; i < offsets.length; i++) {
    if (offsets[i] + counts[i] > bytes.length) {
      throw new DecodeProblem(
        `truncated TIFF: strip ${i} ends at byte ${offsets[i] + counts[i]}, file has ${bytes.length} bytes`,
      );
    }
  }
  UTIF.decodeImage(buf, ifd);
  const need = width * height * spp * (depth / 8);
  if (!ifd.data || ifd.data.length < need) {
    throw new DecodeProblem(`TIFF pixel data short (${ifd.data?.length ?? 0} of ${need} bytes)`);
  }
  // utif2 has already undone the LZW/Deflate horizontal predictor and swapped 16-bit samples to little-endian.
  let samples = depth === 8
    ? ifd.data.subarray(0, need)
    : reduce16(new Uint16Array(ifd.data.buffer.slice(ifd.data.byteOffset, ifd.data.byteOffset + need)));
  if (photometric === 3) {
    const map = tag(ifd, 320);
    if (!map || spp !== 1 || depth !== 8) throw new DecodeProblem("palette TIFF without an 8-bit colour map");
    if (opts.paletteIndices) return checkedImage(width, height, 1, Uint8Array.from(samples));
    const n = map.length / 3, out = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) {
      for (let k = 0; k < 3; k++) out[3 * i + k] = Math.round((map[k * n + samples[i]] ?? 0) / 257);
    }
    return checkedImage(width, height, 3, out);
  }
  if (photometric === 0) samples = samples.map((v) => 255 - v); // WhiteIsZero
  // Extra samples beyond RGBA (or gray + alpha) are dropped; gray + alpha becomes RGBA.
  const keep = spp >= 4 && photometric === 2 ? 4 : spp >= 3 && photometric === 2 ? 3 : spp >= 2 ? 2 : 1;
  let data = keep === spp ? Uint8Array.from(samples) : selectChannels(samples, spp, keep);
  if (keep === 2) data = grayAlphaToRGBA(data);
  return checkedImage(width, height, keep === 2 ? 4 : keep, data);
}

function selectChannels(src: Uint8Array, from: number, to: number): Uint8Array {
  const n = src.length / from, out = new Uint8Array(n * to);
  for (let i = 0; i < n; i++) for (let k = 0; k < to; k++) out[i * to + k] = src[i * from + k];
  return out;
}

/** Drops alpha and replicates gray, giving a 3-channel image (the same object when already RGB). */
export function toRGB(image: Image): Image {
  const { width, height, channels, data } = image;
  if (channels === 3) return image;
  const n = width * height, out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) out[3 * i + k] = channels === 1 ? data[i] : data[4 * i + k];
  }
  return { width, height, channels: 3, data: out };
}

/** Checks that an Image is well formed (positive integer size, 1/3/4 channels, matching data length). */
export function validateImage(image: Image, what = "image"): void {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`${what}: size must be positive integers, got ${width}x${height}`);
  }
  if (channels !== 1 && channels !== 3 && channels !== 4) throw new RangeError(`${what}: channels must be 1, 3 or 4`);
  if (!(data instanceof Uint8Array) || data.length !== width * height * channels) {
    throw new RangeError(`${what}: data must be a Uint8Array of ${width * height * channels} bytes`);
  }
}

/** Encodes an 8-bit gray, RGB or RGBA image as PNG bytes. */
export function encodePng(image: Image): Uint8Array {
  validateImage(image, "encodePng");
  return encodePngRaw({
    width: image.width,
    height: image.height,
    data: image.data,
    channels: image.channels,
    depth: 8,
  });
}

/** Writes `image` as a PNG at `path`, via a temporary file and a rename so readers never see half a file. */
export async function writePng(path: string, image: Image): Promise<void> {
  validateImage(image, `writePng ${path}`);
  await writeFileAtomic(path, encodePng(image));
}

/** Writes bytes to `path` through a sibling temporary file and a rename. */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`${path}: cannot write (${(e as Error).message})`, { cause: e });
  }
}
