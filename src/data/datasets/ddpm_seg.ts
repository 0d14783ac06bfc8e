// The ddpm-segmentation face sets (FFHQ-34, CelebA-19): square images with .npy class maps,
// resized to the model's resolution as that code does.
import { findImages } from "../folder.ts";
import type { Limits } from "../../io/limits.ts";
import { toRGB } from "../image.ts";
import { npyToLabel, readNpy } from "../npy.ts";
import { resizeImageBilinear, resizeLabelNearest } from "../resize.ts";
import { DatasetError, type SegDataset, type SegItem, SegSplit } from "./dataset.ts";
import { exists, isDir, stemOf } from "./files.ts";
import { checkValues, readAnyImage } from "./pairs.ts";

/** Class counts of the ddpm-segmentation datasets (names as in its data_util.py). */
export const DDPM_SEG_CLASSES: Record<string, number> = { ffhq_34: 34, celeba_19: 19 };

/** Options of loadDdpmSegDataset. */
export interface DdpmSegOptions {
  /**
   * Model resolution: images are resized to size×size (bilinear with antialiasing, as
   * torchvision's Resize on a PIL image) and labels nearest-neighbour (as cv2.INTER_NEAREST).
   * Default: the image's own size (labels of another size are still resized to it).
   */
  size?: number;
  /** Number of classes; when given, label values must be below it or 255. */
  classes?: number;
  /** Limits of the image and .npy readers (see Limits). */
  limits?: Limits;
}

/**
 * The ddpm-segmentation layout: `<root>/<split>/` (searched recursively, as its loader does) holding
 * square .png/.jpg/.jpeg images, each with a .npy class map of the same path and stem; sorted by
 * path in code-unit order (Python's sorted()). Labels must be square too: one whose side differs
 * from the target is resized nearest-neighbour, as ddpm-segmentation resizes every label to the
 * resolution; one of another shape is an error.
 * @throws DatasetError for a missing folder or class map; RangeError for a bad `size`.
 */
export async function loadDdpmSeg(
  root: string,
  split: "train" | "test",
  opts: DdpmSegOptions = {},
): Promise<SegSplit> {
  const dir = `${root.replace(/\/+$/, "")}/${split}`;
  if (!(await isDir(dir))) throw new DatasetError(dir, "folder not found");
  if (opts.size !== undefined && !(Number.isInteger(opts.size) && opts.size > 0)) {
    throw new RangeError(`size must be a positive integer, got ${opts.size}`);
  }
  // Every folder, as ddpm-segmentation's loader walks them; a link to nothing is an error rather
  // than an image silently left out.
  const listing = await findImages(dir, { skipLabelFolders: false });
  if (listing.skippedLinks.length) {
    throw new DatasetError(`${dir}/${listing.skippedLinks[0]}`, "a link to nothing, or a link back to a folder above");
  }
  const images = listing.paths.filter((p) => /\.(png|jpe?g)$/i.test(p));
  const items: SegItem[] = [];
  for (const image of images) {
    const npy = image.slice(0, image.lastIndexOf(".")) + ".npy";
    if (!(await exists(npy))) throw new DatasetError(npy, `missing class map for ${image}`);
    const name = stemOf(image);
    items.push({
      name,
      files: { image, label: npy },
      load: async () => {
        let img = toRGB(await readAnyImage(image, opts.limits));
        if (img.width !== img.height) {
          throw new DatasetError(image, `image is ${img.width}x${img.height}; only square images are supported`);
        }
        const lab = npyToLabel(await readNpy(npy, opts.limits), npy);
        if (lab.width !== lab.height) {
          throw new DatasetError(npy, `class map is ${lab.width}x${lab.height} but its image ${image} is square`);
        }
        // Values are checked before resizing, so an error gives the position in the file.
        if (opts.classes !== undefined) checkValues(npy, lab.data, lab.width, opts.classes);
        const s = opts.size ?? img.width;
        if (img.width !== s) img = resizeImageBilinear(img, s, s);
        const label = lab.width === s ? lab.data : resizeLabelNearest(lab.data, lab.width, lab.height, s, s);
        return { name, image: img, label };
      },
    });
  }
  return new SegSplit(items);
}

/**
 * Both splits of a ddpm-segmentation dataset (`name` e.g. "ffhq_34" picks the class count).
 * @throws RangeError when the class count is neither given nor known for `name`.
 */
export async function loadDdpmSegDataset(
  root: string,
  opts: DdpmSegOptions & { name?: string } = {},
): Promise<SegDataset> {
  const name = opts.name ?? stemOf(root.replace(/\/+$/, ""));
  const classes = opts.classes ?? DDPM_SEG_CLASSES[name];
  if (classes === undefined) throw new RangeError(`unknown class count for ${name}: pass opts.classes`);
  const splitOpts = { ...opts, classes };
  return {
    name,
    classes,
    train: await loadDdpmSeg(root, "train", splitOpts),
    test: await loadDdpmSeg(root, "test", splitOpts),
  };
}
