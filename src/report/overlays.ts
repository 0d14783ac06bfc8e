// Segmentation overlays: an image beside its ground truth and predictions, one PNG per test image.
import { type Image, writePng } from "../data/image.ts";
import { grid } from "./grid.ts";

// Class colours: black background, white first class, then distinct hues; gray for ignored pixels.
const PALETTE = [[0, 0, 0], [255, 255, 255], [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48]];
const IGNORED = [128, 128, 128];

/** An H×W label map (255 = ignore) drawn as an RGB image. */
export function rgbOfLabels(label: Uint8Array, width: number, height: number): Image {
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    data.set(label[p] === 255 ? IGNORED : PALETTE[label[p] % PALETTE.length], p * 3);
  }
  return { width, height, channels: 3, data };
}

/** Writes `image | truth | predictions...` as one row to the PNG at `path`. */
export async function writeOverlay(
  path: string,
  image: Image,
  truth: Uint8Array,
  predictions: readonly Uint8Array[],
): Promise<void> {
  const { width: w, height: h } = image;
  const row = [image, rgbOfLabels(truth, w, h), ...predictions.map((p) => rgbOfLabels(p, w, h))];
  await writePng(path, grid([row]));
}
