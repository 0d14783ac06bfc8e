// Image files <-> 8-bit HWC pixel arrays: PNG, JPEG and TIFF decoding (format found by magic bytes,
// not by extension, since datasets misname files), atomic PNG writing, and channel conversion.
//
// PNG and TIFF are decoded by this project's own code (png.ts, tiff.ts), which checks every size,
// offset and checksum before use; JPEG by jpeg-js, after the frame size is checked here. Every
// reader takes resource limits (see Limits): a file declaring more pixels or bytes than allowed is
// refused before anything is allocated for it.
import { rename, rm, writeFile } from "node:fs/promises";
import process from "node:process";
import { readBytes } from "../io/fs.ts";
import { encode as encodePngRaw } from "fast-png";
import jpeg from "jpeg-js";
import { LimitError, type Limits, resolveLimits } from "../io/limits.ts";
import { checkedImage, checkPixels, DecodeProblem, type Image } from "./pixels.ts";
import { decodePng } from "./png.ts";
import { decodeTiff } from "./tiff.ts";

export type { Image } from "./pixels.ts";

/** The formats `decodeImage` reads, as `detectFormat` names them (BMP is read too, by its own check). */
export type ImageFormat = "png" | "jpeg" | "tiff";

/**
 * How to read an image. The limits used are `maxPixels` (width × height, default 2^26) and
 * `maxBytes` (decompressed samples, default 512 MiB); see Limits.
 */
export interface ReadOptions extends Limits {
  /** Palette images: return the raw palette indices as a 1-channel image (label maps), not colours. */
  paletteIndices?: boolean;
}

/** A file that cannot be read as an image; the message starts with the file's path. */
export class ImageError extends Error {
  /** An error for `path` (or the name given to `decodeImage`) saying `problem`, with `options.cause`. */
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

/** Reads and decodes an image file; throws an ImageError naming the file for anything it cannot read. */
export async function readImage(path: string, opts: ReadOptions = {}): Promise<Image> {
  let bytes: Uint8Array;
  try {
    bytes = await readBytes(path);
  } catch (e) {
    throw new ImageError(path, `cannot read file (${(e as Error).message})`, { cause: e });
  }
  return decodeImage(bytes, path, opts);
}

/**
 * Decodes image bytes; `name` (usually the path) heads every error message. Throws an ImageError
 * for bytes that are not a readable image (its cause a LimitError when a limit was exceeded), a
 * TypeError for an invalid limit.
 */
export function decodeImage(bytes: Uint8Array, name = "<bytes>", opts: ReadOptions = {}): Image {
  const limits = resolveLimits(opts);
  if (bytes.length === 0) throw new ImageError(name, "empty file");
  const format = detectFormat(bytes);
  if (format === null) {
    const head = Array.from(bytes.subarray(0, 8), (v) => v.toString(16).padStart(2, "0")).join(" ");
    throw new ImageError(name, `unknown image format (first bytes ${head}; expected PNG, JPEG or TIFF)`);
  }
  let image: Image;
  try {
    const indices = opts.paletteIndices ?? false;
    image = format === "png"
      ? decodePng(bytes, indices, limits)
      : format === "jpeg"
      ? decodeJpeg(bytes, limits)
      : decodeTiff(bytes, indices, limits);
  } catch (e) {
    const kind = format.toUpperCase();
    // Problems the decoders detect themselves (and limits) say what they are; anything jpeg-js
    // throws means the bytes do not parse.
    if (e instanceof DecodeProblem || e instanceof LimitError) {
      throw new ImageError(name, `${kind}: ${e.message}`, { cause: e });
    }
    const err = e as Error;
    const detail = err.message + (err.cause instanceof Error ? ` (${err.cause.message})` : "");
    throw new ImageError(name, `corrupt or truncated ${kind} data: ${detail}`, { cause: e });
  }
  return image;
}

// jpeg-js reads the frame size from the SOF segment; it is read here first so that an oversized
// image is refused with the limit's name before the library allocates anything.
function jpegSize(bytes: Uint8Array): { width: number; height: number } | null {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let p = 2; p + 4 <= bytes.length;) {
    if (bytes[p] !== 0xff) return null;
    const marker = bytes[p + 1];
    if (marker === 0xff) {
      p++; // fill byte
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      p += 2;
      continue;
    }
    const len = v.getUint16(p + 2);
    const sof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (sof) return p + 9 <= bytes.length ? { height: v.getUint16(p + 5), width: v.getUint16(p + 7) } : null;
    if (marker === 0xda || len < 2) return null; // scan data before any frame header
    p += 2 + len;
  }
  return null;
}

function decodeJpeg(bytes: Uint8Array, limits: Required<Limits>): Image {
  const size = jpegSize(bytes);
  if (size) checkPixels(limits, size.width, size.height);
  // tolerantDecoding off: a cut or damaged scan should fail, not come back half grey.
  const j = jpeg.decode(bytes, {
    useTArray: true,
    formatAsRGBA: false,
    tolerantDecoding: false,
    maxResolutionInMP: limits.maxPixels / 1e6,
    maxMemoryUsageInMB: limits.maxBytes / 2 ** 20,
  });
  // jpeg-js always returns RGB (grayscale JPEGs replicated to three equal channels).
  return checkedImage(j.width, j.height, 3, j.data);
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
  const tmp = `${path}.tmp-${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {});
    throw new Error(`${path}: cannot write (${(e as Error).message})`, { cause: e });
  }
}
