// The MoNuSeg 2018 images as the experiment uses them: the 44 train and test images without labels
// for pre-training (listed from the two images/ folders, never from masks/), the labelled training
// images and the test images with their instance maps, each optionally downscaled (2× = 20×
// magnification) for the networks while the test ground truth stays at full resolution.
import { DatasetError, type LabelledImage } from "../../src/data/datasets/dataset.ts";
import { compareCodeUnits, isDir, listFiles } from "../../src/data/datasets/files.ts";
import { loadMoNuSeg } from "../../src/data/datasets/monuseg.ts";
import type { NamedImage } from "../../src/data/folder.ts";
import { type Image, readImage, toRGB } from "../../src/data/image.ts";
import { resizeImageBilinear } from "../../src/data/resize.ts";
import type { Labelled } from "../../src/segment/heads.ts";

const TIFF = [".tif", ".tiff"];

/** The image files of `root`/train/images and `root`/test/images, each folder sorted by name. */
export async function listUnlabelledImages(root: string): Promise<{ train: string[]; test: string[] }> {
  if (!(await isDir(root))) {
    throw new DatasetError(root, "MoNuSeg folder not found (expected train/images and test/images under it)");
  }
  const list = async (split: string) =>
    (await listFiles(`${root}/${split}/images`, TIFF)).sort(compareCodeUnits).map((f) =>
      `${root}/${split}/images/${f}`
    );
  return { train: await list("train"), test: await list("test") };
}

/** An RGB image shrunk by an integer `factor` (PIL's antialiased bilinear filter); 1 returns it as is. */
export function downscaleImage(image: Image, factor: number): Image {
  if (factor === 1) return image;
  return resizeImageBilinear(image, Math.round(image.width / factor), Math.round(image.height / factor));
}

/**
 * A label map shrunk by an integer `factor`: each output pixel is foreground (1) when at least half
 * of its factor × factor input block is, background otherwise; blocks with an ignored (255) pixel
 * in their majority stay 255. Binary maps only (0, 1, 255).
 */
export function downscaleLabel(label: Uint8Array, width: number, height: number, factor: number): Uint8Array {
  if (factor === 1) return label;
  const w = Math.floor(width / factor), h = Math.floor(height / factor), area = factor * factor;
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let fg = 0, ignored = 0;
      for (let dy = 0; dy < factor; dy++) {
        for (let dx = 0; dx < factor; dx++) {
          const v = label[(y * factor + dy) * width + x * factor + dx];
          if (v === 255) ignored++;
          else if (v === 1) fg++;
          else if (v !== 0) throw new RangeError(`downscaleLabel: value ${v} is not binary (0, 1, 255)`);
        }
      }
      out[y * w + x] = 2 * ignored > area ? 255 : 2 * fg >= area - ignored && fg > 0 ? 1 : 0;
    }
  }
  return out;
}

/** Reads the 44 images (labels unused) and downscales them, reporting progress to `log`. */
export async function loadUnlabelled(
  root: string,
  factor: number,
  log: (line: string) => void,
): Promise<NamedImage[]> {
  const { train, test } = await listUnlabelledImages(root);
  if (train.length === 0 || test.length === 0) {
    throw new DatasetError(root, `found ${train.length} train and ${test.length} test images; expected 30 and 14`);
  }
  const out: NamedImage[] = [];
  for (const path of [...train, ...test]) {
    out.push({ name: path, image: downscaleImage(toRGB(await readImage(path)), factor) });
  }
  log(
    `pre-training images: ${train.length} from ${root}/train/images and ${test.length} from ${root}/test/images` +
      (factor > 1 ? `, downscaled ${factor}×` : ""),
  );
  return out;
}

/** A labelled image at full resolution and the (possibly downscaled) version the networks see. */
export interface ScaledExample {
  full: LabelledImage;
  /** The networks' input: image and label downscaled by the factor (the same object when 1). */
  scaled: Labelled;
}

function scale(ex: LabelledImage, factor: number): ScaledExample {
  if (factor === 1) return { full: ex, scaled: ex };
  const image = downscaleImage(ex.image, factor);
  return {
    full: ex,
    scaled: { name: ex.name, image, label: downscaleLabel(ex.label, ex.image.width, ex.image.height, factor) },
  };
}

/** The experiment's labelled data: the sorted training split and the test split, read on demand. */
export interface MoNuSegSplits {
  trainNames: string[];
  testNames: string[];
  /** Training image `i` (sorted order), downscaled. */
  train(i: number): Promise<ScaledExample>;
  /** Test image `i` (sorted order) with its instance map, downscaled for the networks. */
  test(i: number): Promise<ScaledExample>;
}

/** Opens the MoNuSeg folder through the library's loader (masks for train, XML polygons for test). */
export async function openSplits(root: string, factor: number): Promise<MoNuSegSplits> {
  const ds = await loadMoNuSeg(root);
  return {
    trainNames: ds.train.names,
    testNames: ds.test.names,
    train: async (i) => scale(await ds.train.load(i), factor),
    test: async (i) => scale(await ds.test.load(i), factor),
  };
}
