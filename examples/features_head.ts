// Per-pixel features of one image from a pre-trained UNet, and a pixel classifier (the paper's MLP
// head) trained on them, as MDM's few-shot segmentation does:
//   deno run -A examples/features_head.ts <image> <mask> <checkpoint> [--steps N] [--threads T]
// <checkpoint> is a model.safetensors with its config.json beside it (examples/pretrain_folder.ts and
// train.ts write both); <mask> is an image of the same size, 0 on background and non-zero on the object.
import {
  Adam,
  decoderFeatures,
  dice,
  F,
  Generator,
  imageTensor,
  loadModel,
  manualSeed,
  noGrad,
  PixelClassifier,
  randint,
  readImage,
  setNumThreads,
  tensor,
  tidy,
  toRGB,
  UNet,
} from "../mod.ts";

const [imagePath, maskPath, checkpoint, ...flags] = Deno.args;
const flag = (name: string, fallback: number) =>
  Number(flags.includes(`--${name}`) ? flags[flags.indexOf(`--${name}`) + 1] : fallback);
const steps = flag("steps", 300), threads = flag("threads", navigator.hardwareConcurrency);
if (!checkpoint || checkpoint.startsWith("--") || !(steps >= 1 && threads >= 1)) {
  console.error("usage: features_head.ts <image> <mask> <checkpoint> [--steps N] [--threads T]");
  Deno.exit(2);
}
setNumThreads(threads);

const image = toRGB(await readImage(imagePath)), mask = await readImage(maskPath);
if (mask.width !== image.width || mask.height !== image.height) {
  throw new RangeError(`${maskPath} is ${mask.width}×${mask.height}, ${imagePath} ${image.width}×${image.height}`);
}
const { options } = JSON.parse(await Deno.readTextFile(checkpoint.replace(/[^/]*$/, "config.json")));
const { model } = loadModel(checkpoint, (vb) => new UNet(options.unet, vb));
model.eval();

// The encoder halves the image at each level: use the largest part whose sides it can halve.
const unit = 2 ** (model.config.channelMult.length - 1);
const h = image.height - image.height % unit, w = image.width - image.width % unit;
if (h === 0 || w === 0) throw new RangeError(`${imagePath}: smaller than ${unit}×${unit} pixels`);
const labels = new Uint8Array(h * w); // 0 background, 1 object, row-major
for (let y = 0; y < h; y++) {
  for (let x = 0; x < w; x++) labels[y * w + x] = mask.data[(y * mask.width + x) * mask.channels] > 0 ? 1 : 0;
}

// Features from the middle of the decoder (the paper takes blocks 8-12 of its 18), with the input
// masked at t = 50 as in pre-training: [1, D, h, w], then one row per pixel: [h·w, D].
const n = model.numOutputBlocks, blocks = Array.from({ length: Math.ceil(n / 3) }, (_, i) => Math.floor(n / 3) + i);
using masks = new Generator(0);
using features = tidy(() => {
  const x = imageTensor(image, "cpu").narrow(2, 0, h).narrow(3, 0, w); // [1, 3, h, w] in [-1, 1]
  const f = decoderFeatures(model, x, { method: options.method, blocks, timesteps: [50], generator: masks });
  return f.permute(0, 2, 3, 1).reshape(h * w, -1);
});
console.log(`features: ${h}×${w} pixels × ${features.size(1)} channels from decoder blocks ${blocks.join(", ")}`);

// The head: Linear-ReLU-BatchNorm ×2, then Linear to 2 classes, trained on batches of random pixels.
manualSeed(0);
const head = new PixelClassifier(features.size(1), 2);
using opt = new Adam(head.parameters(), { lr: 1e-3 });
using target = tensor(BigInt64Array.from(labels, BigInt)); // [h·w] class ids
for (let step = 1; step <= steps; step++) {
  const loss = tidy(() => {
    const rows = randint(0, h * w, [Math.min(4096, h * w)]);
    opt.zeroGrad();
    const l = F.crossEntropy(head.forward(features.indexSelect(0, rows)), target.indexSelect(0, rows));
    l.backward();
    opt.step();
    return l.item();
  });
  if (step % 50 === 0 || step === steps) console.log(`step ${step}: cross-entropy ${loss.toFixed(4)}`);
}

head.eval();
const predicted = noGrad(() => tidy(() => head.forward(features).argmax(1).toArray())); // [h·w] int64
const pred = Uint8Array.from(predicted, Number);
const accuracy = pred.reduce((n, p, i) => n + (p === labels[i] ? 1 : 0), 0) / pred.length;
console.log(`training accuracy ${(100 * accuracy).toFixed(1)}%, Dice ${dice(pred, labels).toFixed(3)}`);
