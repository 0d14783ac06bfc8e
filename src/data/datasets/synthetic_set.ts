// The embedded synthetic H&E set (see ../synthetic.ts, which generates it) as a labelled dataset.
import { toRGB } from "../image.ts";
import { ensureSyntheticDataset, type SyntheticDatasetOptions } from "../synthetic.ts";
import { DatasetError, type SegDataset, SegSplit } from "./dataset.ts";
import { stemOf } from "./files.ts";
import { checkBinaryMask, checkSize, readAnyImage, readClassMap } from "./pairs.ts";

/**
 * The embedded synthetic H&E set (generated into `cacheDir` on first use, see synthetic.ts): masks
 * {0, 1} as labels and the 8-bit instance maps as instances; the two must agree.
 */
export async function loadSynthetic(cacheDir: string, opts: SyntheticDatasetOptions = {}): Promise<SegDataset> {
  const ds = await ensureSyntheticDataset(cacheDir, opts);
  const split = (s: typeof ds.train) =>
    new SegSplit(s.images.map((image, i) => {
      const label = s.masks[i], inst = s.instances[i], name = stemOf(image);
      return {
        name,
        files: { image, label, instances: inst },
        load: async () => {
          const img = toRGB(await readAnyImage(image));
          const m = await readClassMap(label);
          checkSize(label, "mask", m.width, m.height, img, image);
          checkBinaryMask(label, m.data, m.width);
          const ids = await readClassMap(inst);
          checkSize(inst, "instance map", ids.width, ids.height, img, image);
          for (let k = 0; k < ids.data.length; k++) {
            if ((ids.data[k] > 0 ? 1 : 0) !== m.data[k]) {
              throw new DatasetError(
                inst,
                `instance map and mask ${label} disagree at pixel ${k % m.width}, ${Math.floor(k / m.width)}`,
              );
            }
          }
          return { name, image: img, label: m.data, instances: Int32Array.from(ids.data) };
        },
      };
    }));
  return {
    name: "synthetic",
    classes: 2,
    classNames: ["background", "nucleus"],
    train: split(ds.train),
    test: split(ds.test),
  };
}
