// What the image decoders (PNG, TIFF) share: the Image type, the problem they report, and the
// sample conversions to 8-bit interleaved pixels.
import { checkLimit, type Limits } from "../io/limits.ts";

/** An 8-bit image, pixels row-major with interleaved channels (HWC). */
export interface Image {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** Samples per pixel: 1 (grey or label), 3 (RGB) or 4 (RGBA). */
  channels: 1 | 3 | 4;
  /** width × height × channels bytes, row-major, channels interleaved. */
  data: Uint8Array;
}

/** A problem a decoder found in the bytes; decodeImage adds the file's name and the format. */
export class DecodeProblem extends Error {}

/** Checks a declared size against `maxPixels` before anything is allocated for it. */
export function checkPixels(limits: Required<Limits>, width: number, height: number): void {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new DecodeProblem(`invalid size ${width}x${height}`);
  }
  checkLimit(limits, "maxPixels", width * height, `an image of ${width}x${height} pixels`);
}

/** The Image, after checking that the data holds exactly width × height × channels (1, 3 or 4) bytes. */
export function checkedImage(width: number, height: number, channels: number, data: Uint8Array): Image {
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

/** 16 -> 8 bit by rounding v * 255 / 65535, so 0 -> 0, 65535 -> 255 and k * 257 -> k exactly. */
export function reduce16(v: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = Math.round(v[i] / 257);
  return out;
}

/** Gray + alpha pairs to RGBA, the gray replicated. */
export function grayAlphaToRGBA(ga: Uint8Array): Uint8Array {
  const n = ga.length / 2, out = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    out[4 * i] = out[4 * i + 1] = out[4 * i + 2] = ga[2 * i];
    out[4 * i + 3] = ga[2 * i + 1];
  }
  return out;
}

/** The first `to` of every `from` interleaved samples. */
export function selectChannels(src: Uint8Array, from: number, to: number): Uint8Array {
  const n = src.length / from, out = new Uint8Array(n * to);
  for (let i = 0; i < n; i++) for (let k = 0; k < to; k++) out[i * to + k] = src[i * from + k];
  return out;
}
