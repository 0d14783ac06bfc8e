// Overlays for binary segmentation that a reader can check at a glance: a region of the image, its
// ground truth, and each prediction coloured by agreement with the truth (white: found, red: false
// alarm, blue: missed), small enough to commit.
import { type Image, writePng } from "../data/image.ts";
import { grid } from "./grid.ts";

/** Colours of `errorMap`: background, true positive, false positive, false negative. */
export const ERROR_COLOURS = {
  background: [0, 0, 0],
  found: [255, 255, 255],
  falseAlarm: [235, 50, 50],
  missed: [60, 150, 255],
} as const;

/** A square region of an image and of its masks, ready to lay out. */
export interface OverlayPanels {
  /** Top-left corner and side of the region in the full image, pixels. */
  x0: number;
  y0: number;
  size: number;
  image: Image;
  /** Binary ground truth of the region (0/1). */
  truth: Uint8Array;
  /** Binary predictions of the region by name (0/1). */
  predictions: Record<string, Uint8Array>;
}

/** The `size`² region at (x0, y0) of an H×W map with `channels` bytes per pixel. */
function cut(data: Uint8Array, width: number, channels: number, x0: number, y0: number, size: number): Uint8Array {
  const out = new Uint8Array(size * size * channels);
  for (let y = 0; y < size; y++) {
    out.set(
      data.subarray(((y0 + y) * width + x0) * channels, ((y0 + y) * width + x0 + size) * channels),
      y * size * channels,
    );
  }
  return out;
}

/**
 * Picks a `size`² region of the image (among a 3 × 3 grid of candidates) whose share of ground-truth
 * foreground is closest to the whole image's, and cuts the image, the truth and every prediction
 * (binary maps, 0/1, of the image's size) to it.
 * @throws RangeError when the image is smaller than the region or a map has the wrong size.
 */
export function overlayPanels(
  image: Image,
  truth: Uint8Array,
  predictions: Record<string, Uint8Array>,
  size = 256,
): OverlayPanels {
  const { width: w, height: h } = image;
  if (w < size || h < size) throw new RangeError(`overlayPanels: the image is ${w}×${h}, smaller than ${size}²`);
  for (const [name, m] of [["truth", truth], ...Object.entries(predictions)] as const) {
    if (m.length !== w * h) throw new RangeError(`overlayPanels: ${name} has ${m.length} pixels, the image ${w * h}`);
  }
  const share = (x0: number, y0: number, s: number, sw: number) => {
    let n = 0;
    for (let y = y0; y < y0 + s; y++) for (let x = x0; x < x0 + sw; x++) n += truth[y * w + x];
    return n / (s * sw);
  };
  const whole = share(0, 0, h, w);
  let best = { x0: 0, y0: 0, gap: Infinity };
  for (const fy of [0.25, 0.5, 0.75]) {
    for (const fx of [0.25, 0.5, 0.75]) {
      const x0 = Math.round(fx * (w - size)), y0 = Math.round(fy * (h - size));
      const gap = Math.abs(share(x0, y0, size, size) - whole);
      if (gap < best.gap) best = { x0, y0, gap };
    }
  }
  const { x0, y0 } = best;
  return {
    x0,
    y0,
    size,
    image: { width: size, height: size, channels: 3, data: cut(image.data, w, 3, x0, y0, size) },
    truth: cut(truth, w, 1, x0, y0, size),
    predictions: Object.fromEntries(Object.entries(predictions).map(([k, m]) => [k, cut(m, w, 1, x0, y0, size)])),
  };
}

/** A binary prediction against the truth as an RGB image in `ERROR_COLOURS`. */
export function errorMap(prediction: Uint8Array, truth: Uint8Array, width: number, height: number): Image {
  if (prediction.length !== width * height || truth.length !== width * height) {
    throw new RangeError(`errorMap: maps of ${prediction.length} and ${truth.length} pixels for ${width}×${height}`);
  }
  const data = new Uint8Array(width * height * 3);
  const c = ERROR_COLOURS;
  for (let p = 0; p < prediction.length; p++) {
    const colour = prediction[p] ? (truth[p] ? c.found : c.falseAlarm) : truth[p] ? c.missed : c.background;
    data.set(colour, p * 3);
  }
  return { width, height, channels: 3, data };
}

/**
 * Writes one PNG with a row per list of prediction names: `image | truth | each prediction's error
 * map`; rows after the first leave the image cell blank (it would repeat the first row's, and a
 * photograph is most of a PNG's bytes).
 * @throws RangeError for a name with no prediction in `panels`.
 */
export async function writeErrorOverlay(
  path: string,
  panels: OverlayPanels,
  rows: readonly (readonly string[])[],
): Promise<void> {
  const s = panels.size;
  const truth = errorMap(panels.truth, panels.truth, s, s);
  const blank: Image = { width: s, height: s, channels: 3, data: new Uint8Array(s * s * 3).fill(255) };
  const images = rows.map((names, r) => {
    const row = [r === 0 ? panels.image : blank, truth];
    for (const name of names) {
      const p = panels.predictions[name];
      if (!p) throw new RangeError(`writeErrorOverlay: no prediction named ${name}`);
      row.push(errorMap(p, panels.truth, s, s));
    }
    return row;
  });
  await writePng(path, grid(images));
}
