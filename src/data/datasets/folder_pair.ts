// Generic labelled folders: `images/` and `masks/` paired by file stem, and a dataset of two such
// splits (`train/` and `test/`) whose class count is given or read from its training masks.
import type { Limits } from "../../io/limits.ts";
import { toRGB } from "../image.ts";
import { DatasetError, IGNORE_LABEL, type SegDataset, type SegItem, SegSplit } from "./dataset.ts";
import { compareCodeUnits, listFiles, stemOf } from "./files.ts";
import { checkSize, checkValues, readAnyImage, readClassMap } from "./pairs.ts";

const MASK_EXTENSIONS = [".png", ".bmp", ".tif", ".tiff"];

/** Options of loadFolderPair. */
export interface FolderPairOptions {
  /** When given, mask values must be below it or 255. */
  classes?: number;
  /** Limits of the image and mask readers (see Limits). */
  limits?: Limits;
}

/**
 * `<root>/images/` and `<root>/masks/` (not recursive; links to files followed) paired by stem, in
 * code-unit order of the image names. Masks are read as raw values (palette images as indices;
 * see readClassMap). An image without a mask, or with two (same stem, different extensions), is
 * an error; masks without an image are ignored.
 * @throws DatasetError for a missing folder, a missing mask or several masks for one image.
 */
export async function loadFolderPair(root: string, opts: FolderPairOptions = {}): Promise<SegSplit> {
  root = root.replace(/\/+$/, "");
  const imgs = (await listFiles(`${root}/images`, [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"]))
    .sort(compareCodeUnits);
  const masks = new Map<string, string[]>();
  for (const m of await listFiles(`${root}/masks`, MASK_EXTENSIONS)) {
    masks.set(stemOf(m), [...(masks.get(stemOf(m)) ?? []), m]);
  }
  const items: SegItem[] = [];
  for (const file of imgs) {
    const name = stemOf(file), image = `${root}/images/${file}`;
    const found = masks.get(name) ?? [];
    if (found.length === 0) {
      throw new DatasetError(
        `${root}/masks/${name}.png`,
        `missing mask for ${image} (looked for ${name}.{png,bmp,tif,tiff})`,
      );
    }
    if (found.length > 1) {
      throw new DatasetError(`${root}/masks/${found[0]}`, `several masks for ${image}: ${found.join(", ")}`);
    }
    const label = `${root}/masks/${found[0]}`;
    items.push({
      name,
      files: { image, label },
      load: async () => {
        const img = toRGB(await readAnyImage(image, opts.limits));
        const m = await readClassMap(label, opts.limits);
        checkSize(label, "mask", m.width, m.height, img, image);
        if (opts.classes !== undefined) checkValues(label, m.data, m.width, opts.classes, "mask");
        return { name, image: img, label: m.data };
      },
    });
  }
  return new SegSplit(items);
}

/**
 * The number of classes a split's masks use: the largest value other than 255 (ignore) plus one,
 * over every mask (each is read once, not its image).
 * @throws DatasetError when the masks hold no class but 0 (nothing to tell apart).
 */
export async function classesFromMasks(split: SegSplit, limits: Limits = {}): Promise<number> {
  let max = -1;
  for (const it of split.items) {
    const { data } = await readClassMap(it.files.label, limits);
    for (let i = 0; i < data.length; i++) if (data[i] !== IGNORE_LABEL && data[i] > max) max = data[i];
  }
  if (max < 1) {
    const first = split.items[0]?.files.label ?? "the masks";
    throw new DatasetError(
      first,
      `this and the other ${split.items.length - 1} training masks hold no class but ` +
        `${max < 0 ? "255 (ignore)" : "0"}; segmentation needs two (or give --classes)`,
    );
  }
  return max + 1;
}

/** Options of loadFolderDataset. */
export interface FolderDatasetOptions extends FolderPairOptions {
  /** Name in reports (default: the root's path). */
  name?: string;
}

/**
 * `<root>/train/` and `<root>/test/`, each `images/` + `masks/` (see loadFolderPair). The class
 * count is `opts.classes` when given, else the training masks' largest value (255 aside) plus one;
 * every mask's values are then checked against it as it is loaded.
 * @throws DatasetError for a missing folder or mask, or training masks with a single class.
 */
export async function loadFolderDataset(root: string, opts: FolderDatasetOptions = {}): Promise<SegDataset> {
  root = root.replace(/\/+$/, "");
  const probe = await loadFolderPair(`${root}/train`, { limits: opts.limits });
  const classes = opts.classes ?? await classesFromMasks(probe, opts.limits);
  const splitOpts = { classes, limits: opts.limits };
  return {
    name: opts.name ?? root,
    classes,
    train: await loadFolderPair(`${root}/train`, splitOpts),
    test: await loadFolderPair(`${root}/test`, splitOpts),
  };
}
