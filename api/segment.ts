/**
 * Few-shot segmentation from a pre-trained UNet: per-pixel decoder features, the pixel-MLP heads
 * trained on them, sliding-window inference with Gaussian blending, the segmentation metrics (Dice,
 * IoU, AJI, mIoU), and the paper's protocols (medical, faces, and the supervised baseline).
 *
 * ```ts
 * import { decoderFeatures, featureChannels } from "./segment.ts";
 * import { UNet } from "./unet.ts";
 * import { rand } from "./tensor.ts";
 *
 * const unet = new UNet({ imageSize: 32, modelChannels: 32, channelMult: [1, 2], attentionResolutions: [16] });
 * const opts = { method: "mdm", blocks: [2, 3], timesteps: [50] } as const;
 * using f = decoderFeatures(unet, rand([1, 3, 32, 32]).mul(2).sub(1), opts); // [1, D, 32, 32]
 * console.log(f.size(1) === featureChannels(unet, opts));
 * ```
 * @module
 */
export { decoderFeatures, featureChannels, type FeatureOptions } from "../src/segment/features.ts";
export { PixelClassifier } from "../src/segment/classifier.ts";
export {
  type HeadReport,
  type HeadTrainingOptions,
  imageTensor,
  type Labelled,
  predictHeads,
  sampleCrops,
  trainHead,
} from "../src/segment/heads.ts";
export { gaussianMap, type SlidingOptions, slidingWindow, windowStarts } from "../src/segment/sliding.ts";
export {
  ajiBinary,
  type AjiDetail,
  ajiInstance,
  ajiInstanceDetail,
  type Components,
  type Confusion,
  confusion,
  connectedComponents,
  dice,
  glasIoUFromDice,
  iou,
  type LabelMap,
  MeanIoU,
  type MeanIoUOptions,
  type MeanStd,
  meanStd,
} from "../src/segment/metrics.ts";
export {
  type BaselineCheck,
  type BaselineEarlyStopping,
  type BaselineOptions,
  type BaselineResult,
  predictBaseline,
  trainBaseline,
} from "../src/segment/baseline.ts";
export {
  type BinaryResults,
  type BinarySummary,
  type MedicalProtocolOptions,
  type MedicalResult,
  type MedicalRunRecord,
  type MulticlassResults,
  runMedicalProtocol,
  type SupervisedOptions,
} from "../src/segment/medical.ts";
export {
  collectPixels,
  dropSmallClasses,
  type FacesOptions,
  type FacesResult,
  predictFaces,
  runFacesProtocol,
  trainFacesHead,
} from "../src/segment/faces.ts";
