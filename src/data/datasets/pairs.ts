// Reading an image and its label map from a dataset, and the checks that they belong together
// (same size, label values that are classes), each failure naming the file.
import { errorCode, readBytes as readFileBytes } from "../../io/fs.ts";
import { decodeBmp, isBmp } from "../bmp.ts";
import { decodeImage, type Image, ImageError, type ReadOptions } from "../image.ts";
import type { Limits } from "../../io/limits.ts";
import { DatasetError, IGNORE_LABEL } from "./dataset.ts";

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await readFileBytes(path);
  } catch (e) {
    if (errorCode(e) === "ENOENT") throw new DatasetError(path, "file not found", { cause: e });
    throw new ImageError(path, `cannot read file (${(e as Error).message})`, { cause: e });
  }
}

/** Reads a PNG, JPEG, TIFF or BMP image (format from the bytes), within `opts`'s limits. */
export async function readAnyImage(path: string, opts: ReadOptions = {}): Promise<Image> {
  const bytes = await readBytes(path);
  return isBmp(bytes) ? decodeBmp(bytes, path, opts) : decodeImage(bytes, path, opts);
}

/** A label image's raw 8-bit values, H×W. */
export interface ClassMap {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** The values, row-major, width × height bytes. */
  data: Uint8Array;
}

/**
 * Reads a label image as raw 8-bit values: gray as is, palette images as their indices, and
 * RGB(A) only when R = G = B everywhere (alpha ignored). 16-bit PNGs are refused, since the image
 * reader scales them to 8 bits, which would destroy class values. `limits` as for images.
 */
export async function readClassMap(path: string, limits: Limits = {}): Promise<ClassMap> {
  const bytes = await readBytes(path);
  if (bytes.length > 24 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[24] === 16) {
    throw new DatasetError(path, "16-bit PNG label maps are not supported (store class indices as 8-bit)");
  }
  const opts = { ...limits, paletteIndices: true };
  const img = isBmp(bytes) ? decodeBmp(bytes, path, opts) : decodeImage(bytes, path, opts);
  const { width, height, channels, data } = img;
  if (channels === 1) return { width, height, data };
  const out = new Uint8Array(width * height);
  for (let i = 0; i < out.length; i++) {
    const r = data[i * channels], g = data[i * channels + 1], b = data[i * channels + 2];
    if (r !== g || g !== b) {
      throw new DatasetError(
        path,
        `label image has ${channels} channels with colours (pixel ${i % width}, ${
          Math.floor(i / width)
        } is ${r},${g},${b}); expected a gray or palette class map`,
      );
    }
    out[i] = r;
  }
  return { width, height, data: out };
}

/** Checks a label map of `w`×`h` (`what`: "mask", "annotation", ...) has its image's size. */
export function checkSize(
  labelPath: string,
  what: string,
  w: number,
  h: number,
  image: Image,
  imagePath: string,
): void {
  if (w !== image.width || h !== image.height) {
    throw new DatasetError(
      labelPath,
      `${what} is ${w}x${h} but its image ${imagePath} is ${image.width}x${image.height}`,
    );
  }
}

/** Checks every value is < `classes` or 255 (ignore). */
export function checkValues(path: string, data: Uint8Array, width: number, classes: number, what = "label"): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v >= classes && v !== IGNORE_LABEL) {
      throw new DatasetError(
        path,
        `${what} value ${v} at pixel ${i % width}, ${Math.floor(i / width)} is not a class ` +
          `(expected 0..${classes - 1} or ${IGNORE_LABEL})`,
      );
    }
  }
}

/** Checks a mask holds only 0 and 1. */
export function checkBinaryMask(path: string, data: Uint8Array, width: number): void {
  for (let i = 0; i < data.length; i++) {
    if (data[i] > 1) {
      throw new DatasetError(
        path,
        `mask value ${data[i]} at pixel ${i % width}, ${Math.floor(i / width)}; expected 0 or 1`,
      );
    }
  }
}
