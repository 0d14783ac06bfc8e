// MoNuSeg 2018: H&E tiles with nucleus masks and polygon annotations.
import type { Limits } from "../../io/limits.ts";
import { type Image, toRGB } from "../image.ts";
import { readMoNuSegAnnotation } from "../polygons.ts";
import { DatasetError, type LabelledImage, type SegDataset, type SegItem, SegSplit } from "./dataset.ts";
import { compareCodeUnits, exists, listFiles, stemOf } from "./files.ts";
import { checkBinaryMask, checkSize, readAnyImage, readClassMap } from "./pairs.ts";

/** Options of loadMoNuSeg. */
export interface MoNuSegOptions {
  /** Vertex tolerance beyond the image, px (see polygons.ts; default 4). */
  tolerance?: number;
  /** Limits of the image, mask and XML readers (see Limits). */
  limits?: Limits;
}

/**
 * MoNuSeg 2018 (layout in shared/data/monuseg/README.md):
 * - train: `train/images/*.tif` with `train/masks/<stem>.png` (values {0, 1}) as the label; where
 *   `train/annotations/<stem>.xml` exists (13 of 30) also `instances` filled from it. The label
 *   stays the shipped PNG, so `instances > 0` may differ from it at a few boundary pixels.
 * - test: `test/images/*.tif` with `test/annotations/<stem>.xml` required: instances from the
 *   polygons, label = their union.
 * Both sorted by name (code-unit order, as Python's sorted(); few-shot = `train.first(3)`).
 * @throws DatasetError for a missing folder, mask or annotation (when listing).
 */
export async function loadMoNuSeg(root: string, opts: MoNuSegOptions = {}): Promise<SegDataset> {
  root = root.replace(/\/+$/, "");
  const tifs = async (split: string) =>
    (await listFiles(`${root}/${split}/images`, [".tif", ".tiff"])).sort(compareCodeUnits);
  const limits = opts.limits ?? {};
  const readRgb = async (path: string) => toRGB(await readAnyImage(path, limits));
  const annotation = async (xml: string, image: Image) => {
    const ann = await readMoNuSegAnnotation(xml, image.width, image.height, { ...limits, tolerance: opts.tolerance });
    const warnings = ann.skipped.map((s) =>
      `${xml}: region ${s.index} (Id ${s.id ?? "?"}) has ${s.vertices} vertices; skipped`
    );
    return { ann, warnings };
  };

  const trainItems: SegItem[] = [];
  for (const file of await tifs("train")) {
    const name = stemOf(file);
    const image = `${root}/train/images/${file}`;
    const mask = `${root}/train/masks/${name}.png`;
    if (!(await exists(mask))) throw new DatasetError(mask, `missing mask for ${image}`);
    const xml = `${root}/train/annotations/${name}.xml`;
    const hasXml = await exists(xml);
    const files: Record<string, string> = hasXml ? { image, label: mask, annotation: xml } : { image, label: mask };
    trainItems.push({
      name,
      files,
      load: async () => {
        const img = await readRgb(image);
        const m = await readClassMap(mask, limits);
        checkSize(mask, "mask", m.width, m.height, img, image);
        checkBinaryMask(mask, m.data, m.width);
        const out: LabelledImage = { name, image: img, label: m.data };
        if (hasXml) {
          const { ann, warnings } = await annotation(xml, img);
          out.instances = ann.instances;
          if (warnings.length) out.warnings = warnings;
        }
        return out;
      },
    });
  }

  const testItems: SegItem[] = [];
  for (const file of await tifs("test")) {
    const name = stemOf(file);
    const image = `${root}/test/images/${file}`;
    const xml = `${root}/test/annotations/${name}.xml`;
    if (!(await exists(xml))) throw new DatasetError(xml, `missing annotation for ${image}`);
    testItems.push({
      name,
      files: { image, annotation: xml },
      load: async () => {
        const img = await readRgb(image);
        const { ann, warnings } = await annotation(xml, img);
        const out: LabelledImage = { name, image: img, label: ann.mask, instances: ann.instances };
        if (warnings.length) out.warnings = warnings;
        return out;
      },
    });
  }
  return {
    name: "monuseg",
    classes: 2,
    classNames: ["background", "nucleus"],
    train: new SegSplit(trainItems),
    test: new SegSplit(testItems),
  };
}
