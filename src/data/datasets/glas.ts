// GlaS (Warwick QU): colon gland images with one id per gland, in their original single folder.
import type { Limits } from "../../io/limits.ts";
import { toRGB } from "../image.ts";
import { DatasetError, type SegDataset, type SegItem, SegSplit } from "./dataset.ts";
import { compareCodeUnits, compareNatural, listFiles, stemOf } from "./files.ts";
import { checkSize, readAnyImage, readClassMap } from "./pairs.ts";

/** Options of loadGlaS. */
export interface GlaSOptions {
  /**
   * Order of the images, which fixes the few-shot subsets (default "lexicographic"). The MDM
   * code lists GlaS with Python's sorted() over file paths (src/datasets.py, ImageLabelPNGDataset,
   * then `[:num_images]`), i.e. code-unit order, where train_10..train_16 come before train_2:
   * its 8-label subset is train_1, train_10, ..., train_16. "natural" orders by the number
   * (train_1..train_8).
   */
  order?: "lexicographic" | "natural";
  /** Limits of the image readers (see Limits). */
  limits?: Limits;
}

/**
 * GlaS (Warwick QU) from its original single folder: `train_N.bmp`, `testA_N.bmp`, `testB_N.bmp`,
 * each with `<stem>_anno.bmp`, an 8-bit indexed map read as raw palette indices (0 background,
 * one id per gland). label = id > 0, instances = ids. test = testA then testB (in `order`); the
 * two are also `extra.testA` / `extra.testB`.
 * @throws DatasetError for a missing folder, no GlaS images or a missing annotation.
 */
export async function loadGlaS(dir: string, opts: GlaSOptions = {}): Promise<SegDataset> {
  dir = dir.replace(/\/+$/, "");
  const cmp = (opts.order ?? "lexicographic") === "natural" ? compareNatural : compareCodeUnits;
  const files = await listFiles(dir, [".bmp"]);
  const groups: Record<string, SegItem[]> = { train: [], testA: [], testB: [] };
  const names = files.map(stemOf).filter((s) => /^(train|testA|testB)_\d+$/.test(s)).sort(cmp);
  if (names.length === 0) throw new DatasetError(dir, "no GlaS images (train_N.bmp, testA_N.bmp, testB_N.bmp)");
  for (const name of names) {
    const image = `${dir}/${files.find((f) => stemOf(f) === name)}`;
    const annoFile = files.find((f) => f.toLowerCase() === `${name.toLowerCase()}_anno.bmp`);
    const label = `${dir}/${annoFile ?? `${name}_anno.bmp`}`;
    if (!annoFile) throw new DatasetError(label, `missing annotation for ${image}`);
    groups[name.slice(0, name.indexOf("_"))].push({
      name,
      files: { image, label },
      load: async () => {
        const img = toRGB(await readAnyImage(image, opts.limits));
        const ids = await readClassMap(label, opts.limits);
        checkSize(label, "annotation", ids.width, ids.height, img, image);
        const instances = Int32Array.from(ids.data);
        const bin = ids.data.map((v) => (v > 0 ? 1 : 0));
        return { name, image: img, label: bin, instances };
      },
    });
  }
  const testA = new SegSplit(groups.testA), testB = new SegSplit(groups.testB);
  return {
    name: "glas",
    classes: 2,
    classNames: ["background", "gland"],
    train: new SegSplit(groups.train),
    test: new SegSplit([...groups.testA, ...groups.testB]),
    extra: { testA, testB },
  };
}
