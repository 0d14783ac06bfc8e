// Resizing as ddpm-segmentation does: images with PIL's antialiased bilinear filter (torchvision's
// Resize on a PIL image), label maps nearest-neighbour (cv2.INTER_NEAREST), both bit-exact.
import type { Image } from "./image.ts";

/**
 * Nearest-neighbour resize of an H×W label map, top-left aligned as cv2.INTER_NEAREST and
 * torch's mode="nearest": output (x, y) takes input (floor(x·w/outW), floor(y·h/outH)), computed
 * exactly in integers.
 */
export function resizeLabelNearest(
  label: Uint8Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
): Uint8Array {
  if (label.length !== width * height) {
    throw new RangeError(`resizeLabelNearest: ${label.length} values for ${width}x${height}`);
  }
  if (!(Number.isInteger(outWidth) && Number.isInteger(outHeight) && outWidth > 0 && outHeight > 0)) {
    throw new RangeError(`resizeLabelNearest: invalid output size ${outWidth}x${outHeight}`);
  }
  const out = new Uint8Array(outWidth * outHeight);
  const sx = Int32Array.from({ length: outWidth }, (_, x) => Math.min(width - 1, Math.floor((x * width) / outWidth)));
  for (let y = 0; y < outHeight; y++) {
    const row = Math.min(height - 1, Math.floor((y * height) / outHeight)) * width;
    for (let x = 0; x < outWidth; x++) out[y * outWidth + x] = label[row + sx[x]];
  }
  return out;
}

const PRECISION_BITS = 22; // PIL's fixed point for 8-bit resampling (32 - 8 - 2)

// Per output pixel: first input index, count and fixed-point weights of PIL's bilinear
// (triangle) filter, its support widened by the downscale factor (antialiasing).
function bilinearCoeffs(inSize: number, outSize: number) {
  const scale = inSize / outSize, filterscale = Math.max(scale, 1);
  const support = filterscale, ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize), count = new Int32Array(outSize);
  const kk = new Float64Array(outSize * ksize);
  for (let x = 0; x < outSize; x++) {
    const center = (x + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    const w = new Float64Array(xmax);
    for (let k = 0; k < xmax; k++) {
      const t = Math.abs((k + xmin - center + 0.5) / filterscale);
      w[k] = t < 1 ? 1 - t : 0;
      ww += w[k];
    }
    for (let k = 0; k < xmax; k++) {
      const v = ww !== 0 ? w[k] / ww : w[k];
      kk[x * ksize + k] = Math.trunc(0.5 + v * (1 << PRECISION_BITS)); // weights are >= 0
    }
    first[x] = xmin;
    count[x] = xmax;
  }
  return { first, count, kk, ksize };
}

const clip8 = (ss: number) => {
  const v = Math.floor(ss / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
};

/**
 * Resizes an 8-bit image with PIL's Image.resize(..., BILINEAR) algorithm (the triangle filter
 * widened when shrinking, fixed-point weights, a horizontal pass rounded to 8 bits then a vertical
 * one), which is what torchvision's Resize does to the PIL images ddpm-segmentation feeds it.
 */
export function resizeImageBilinear(image: Image, outWidth: number, outHeight: number): Image {
  if (!(Number.isInteger(outWidth) && Number.isInteger(outHeight) && outWidth > 0 && outHeight > 0)) {
    throw new RangeError(`resizeImageBilinear: invalid output size ${outWidth}x${outHeight}`);
  }
  const { width: w, height: h, channels: c } = image;
  let data = image.data, cw = w;
  if (outWidth !== w) {
    const { first, count, kk, ksize } = bilinearCoeffs(w, outWidth);
    const tmp = new Uint8Array(outWidth * h * c);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < outWidth; x++) {
        for (let ch = 0; ch < c; ch++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let k = 0; k < count[x]; k++) ss += data[(y * w + first[x] + k) * c + ch] * kk[x * ksize + k];
          tmp[(y * outWidth + x) * c + ch] = clip8(ss);
        }
      }
    }
    data = tmp;
    cw = outWidth;
  }
  if (outHeight !== h) {
    const { first, count, kk, ksize } = bilinearCoeffs(h, outHeight);
    const tmp = new Uint8Array(cw * outHeight * c);
    for (let y = 0; y < outHeight; y++) {
      for (let x = 0; x < cw; x++) {
        for (let ch = 0; ch < c; ch++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let k = 0; k < count[y]; k++) ss += data[((first[y] + k) * cw + x) * c + ch] * kk[y * ksize + k];
          tmp[(y * cw + x) * c + ch] = clip8(ss);
        }
      }
    }
    data = tmp;
  }
  return { width: outWidth, height: outHeight, channels: c, data: data === image.data ? data.slice() : data };
}
