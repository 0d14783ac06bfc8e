// Pre-trains a small UNet with MDM (timestep-controlled patch masking, SSIM loss) on your own images
// and saves its weights with the config that rebuilds it (the layout train.ts writes):
//   deno run -A examples/pretrain_folder.ts <folder of images> [--steps N] [--size S] [--threads T] [--out DIR]
import { PRETRAIN_DEFAULTS, Pretrainer, RandomCropLoader, saveSafetensors, setNumThreads } from "../mod.ts";

const [folder, ...flags] = Deno.args;
const flag = (name: string, fallback: number | string) =>
  flags.includes(`--${name}`) ? flags[flags.indexOf(`--${name}`) + 1] : String(fallback);
const steps = Number(flag("steps", 200)), size = Number(flag("size", 64)), out = flag("out", "runs/pretrain_folder");
const threads = Number(flag("threads", navigator.hardwareConcurrency));
if (!folder || folder.startsWith("--") || !(steps >= 1 && threads >= 1 && size % 32 === 0 && size > 0 && out)) {
  console.error("usage: pretrain_folder.ts <folder> [--steps N] [--size 32·k] [--threads T] [--out DIR]");
  Deno.exit(2);
}

setNumThreads(threads);
const options = {
  ...PRETRAIN_DEFAULTS, // method "mdm", loss "ssim", 8×8 patches, 1000 diffusion steps, AdamW at 1e-4
  // A small UNet for S×S crops: 3 levels (S, S/2, S/4 pixels), attention at the coarsest.
  unet: { imageSize: size, modelChannels: 32, channelMult: [1, 2, 2], attentionResolutions: [size / 4] },
  batch: 4,
  microBatch: 4,
  steps,
};
// Every image is read into memory; each step draws random crops (smaller images are padded).
const loader = await RandomCropLoader.fromDir(folder, { cropSize: size, padSmall: true });
const trainer = new Pretrainer(options);
console.log(`${loader.length} images, a UNet of ${trainer.model.numParameters()} parameters, ${steps} steps`);
for (let i = 0; i < steps; i++) {
  using batch = loader.nextBatch(options.batch); // [4, 3, S, S] in [-1, 1]
  const { step, loss } = trainer.trainStep(batch);
  if (step % 20 === 0 || step === steps) console.log(`step ${step}: SSIM loss ${loss.toFixed(4)}`);
}
await Deno.mkdir(out, { recursive: true });
saveSafetensors(`${out}/model.safetensors`, trainer.model.stateDict(), { format: "pt", method: options.method });
await Deno.writeTextFile(`${out}/config.json`, JSON.stringify({ options }, null, 2) + "\n");
console.log(`saved ${out}/model.safetensors and ${out}/config.json`);
