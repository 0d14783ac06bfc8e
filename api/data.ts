/**
 * Data: image files (PNG, JPEG, TIFF, BMP decoding with resource limits, PNG writing), `.npy`
 * arrays, MoNuSeg's XML annotations, resizing, the seeded random stream of the data layer, image
 * folders for pre-training (`RandomCropLoader`), the embedded synthetic H&E set, and the labelled
 * segmentation datasets (MoNuSeg, GlaS, the ddpm-segmentation face sets, image/mask folder pairs).
 *
 * Every decoding problem is an error naming the file (`ImageError`, `NpyError`, `AnnotationError`,
 * `DatasetError`), its cause a `LimitError` when a file declares more than a limit allows.
 *
 * ```ts
 * import { readImage, toRGB } from "./data.ts";
 *
 * const image = toRGB(await readImage("tile.png")); // { width, height, channels: 3, data: Uint8Array }
 * ```
 * @module
 */
export {
  decodeImage,
  detectFormat,
  encodePng,
  type Image,
  ImageError,
  type ImageFormat,
  readImage,
  type ReadOptions,
  toRGB,
  validateImage,
  writePng,
} from "../src/data/image.ts";
export {
  decodeNpy,
  type NpyArray,
  type NpyData,
  type NpyDType,
  NpyError,
  npyToLabel,
  readNpy,
} from "../src/data/npy.ts";
export {
  AnnotationError,
  parseMoNuSegXml,
  type RasterizedAnnotation,
  type RasterizeOptions,
  rasterizeRegions,
  readMoNuSegAnnotation,
  readMoNuSegXml,
  type Region,
} from "../src/data/polygons.ts";
export { resizeImageBilinear, resizeLabelNearest } from "../src/data/resize.ts";
export { Rng, type RngState } from "../src/data/rng.ts";
export {
  type BatchOptions,
  describeListing,
  findImages,
  type FindImagesOptions,
  IMAGE_EXTENSIONS,
  type ImageListing,
  LABEL_FOLDERS,
  listImages,
  type LoaderState,
  type NamedImage,
  RandomCropLoader,
  type RandomCropOptions,
} from "../src/data/folder.ts";
export {
  ensureSyntheticDataset,
  generateSynthetic,
  generateTile,
  SYNTHETIC_VERSION,
  type SyntheticDataset,
  type SyntheticDatasetOptions,
  type SyntheticOptions,
  type SyntheticSample,
  type SyntheticSplit,
} from "../src/data/synthetic.ts";
export {
  DatasetError,
  IGNORE_LABEL,
  type LabelledImage,
  type SegDataset,
  type SegItem,
  SegSplit,
} from "../src/data/datasets/dataset.ts";
export { type ClassMap, readAnyImage, readClassMap } from "../src/data/datasets/pairs.ts";
export {
  classesFromMasks,
  type FolderDatasetOptions,
  type FolderPairOptions,
  loadFolderDataset,
  loadFolderPair,
} from "../src/data/datasets/folder_pair.ts";
export { type GlaSOptions, loadGlaS } from "../src/data/datasets/glas.ts";
export { loadMoNuSeg, type MoNuSegOptions } from "../src/data/datasets/monuseg.ts";
export {
  DDPM_SEG_CLASSES,
  type DdpmSegOptions,
  loadDdpmSeg,
  loadDdpmSegDataset,
} from "../src/data/datasets/ddpm_seg.ts";
export { loadSynthetic } from "../src/data/datasets/synthetic_set.ts";
// The readers' resource limits (also exported by ./io), for the loaders' `limits` options.
export { DEFAULT_LIMITS, LimitError, type Limits } from "../src/io/limits.ts";
