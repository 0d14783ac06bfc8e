// Generic labelled folders: `images/` and `masks/` paired by file stem.
import { toRGB } from "../image.ts";
import { DatasetError, type SegItem, SegSplit } from "./dataset.ts";
import { compareCodeUnits, listFiles, stemOf } from "./files.ts";
import { checkSize, checkValues, readAnyImage, readClassMap } from "./pairs.ts";

const MASK_EXTENSIONS = [".png", ".bmp", ".tif", ".tiff"];

export interface FolderPairOptions {
  /** When given, mask values must be below it or 255. */
  classes?: number;
}

/**
 * `<root>/images/` and `<root>/masks/` (not recursive) paired by stem, in code-unit order of the
 * image names. Masks are read as raw values (palette images as indices; see readClassMap). An
 * image without a mask, or with two (same stem, different extensions), is an error; masks
 * without an image are ignored.
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
        const img = toRGB(await readAnyImage(image));
        const m = await readClassMap(label);
        checkSize(label, "mask", m.width, m.height, img, image);
        if (opts.classes !== undefined) checkValues(label, m.data, m.width, opts.classes, "mask");
        return { name, image: img, label: m.data };
      },
    });
  }
  return new SegSplit(items);
}
