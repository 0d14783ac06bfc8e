// Image grids of tensors, for progress pictures and segmentation overlays.
import type { Image } from "../data/image.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import type { Tensor } from "../tensor.ts";
import { noGrad } from "../autograd.ts";
import { tidy } from "../scope.ts";

/** [B, 3, H, W] (or [B, 1, H, W]) in [-1, 1] -> B RGB images. */
export function tensorToImages(x: Tensor<FloatDType, Device>): Image[] {
  if (x.ndim !== 4 || (x.size(1) !== 3 && x.size(1) !== 1)) {
    throw new TypeError(`tensorToImages: expected [B, 3 or 1, H, W], got [${x.shape.join(", ")}]`);
  }
  const [b, c, h, w] = x.shape;
  const data = noGrad(() => tidy(() => x.float().add(1).mul(127.5).round().clamp(0, 255).toArray() as Float32Array));
  const images: Image[] = [];
  for (let i = 0; i < b; i++) {
    const out = new Uint8Array(h * w * 3);
    for (let p = 0; p < h * w; p++) {
      for (let ch = 0; ch < 3; ch++) out[p * 3 + ch] = data[(i * c + (c === 1 ? 0 : ch)) * h * w + p];
    }
    images.push({ width: w, height: h, channels: 3, data: out });
  }
  return images;
}

/** Lays images of one size out in rows × columns with a gap of `gap` pixels in `background`. */
export function grid(rows: Image[][], gap = 4, background: [number, number, number] = [255, 255, 255]): Image {
  const h = rows[0][0].height, w = rows[0][0].width;
  const cols = Math.max(...rows.map((r) => r.length));
  const width = cols * w + (cols + 1) * gap, height = rows.length * h + (rows.length + 1) * gap;
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) data.set(background, p * 3);
  rows.forEach((row, r) =>
    row.forEach((img, c) => {
      if (img.width !== w || img.height !== h || img.channels !== 3) {
        throw new RangeError(`grid: every image must be ${w}×${h} RGB, got ${img.width}×${img.height}×${img.channels}`);
      }
      const x0 = gap + c * (w + gap), y0 = gap + r * (h + gap);
      for (let y = 0; y < h; y++) {
        data.set(img.data.subarray(y * w * 3, (y + 1) * w * 3), ((y0 + y) * width + x0) * 3);
      }
    })
  );
  return { width, height, channels: 3, data };
}
