// The programs in examples/ run as a reader runs them, on a tiny generated image folder with a few
// steps: pre-training saves weights and a config that rebuild the same UNet, and the features
// example trains a head on that checkpoint's features and reports its accuracy and Dice.
import assert from "node:assert/strict";
import { featureChannels, generateTile, loadModel, UNet, writePng } from "../mod.ts";
import { type Run, runScript, runScriptOk, tempDir } from "./helpers/scripts.ts";

const dir = tempDir("mdm-examples-");
const run = `${dir}/run`;

// Pre-training runs once, for both tests (the features example needs its checkpoint).
let pretraining: Promise<Run> | null = null;
function pretrain(): Promise<Run> {
  pretraining ??= (async () => {
    await Deno.mkdir(`${dir}/images`);
    for (let i = 0; i < 3; i++) {
      const tile = generateTile(64, 7, i); // a synthetic H&E tile and its 0/1 nucleus mask
      await writePng(`${dir}/images/tile${i}.png`, tile.image);
      await writePng(`${dir}/mask${i}.png`, tile.mask);
    }
    const args = ["--steps", "2", "--size", "32", "--threads", "1", "--out", run];
    return runScriptOk("examples/pretrain_folder.ts", [`${dir}/images`, ...args]);
  })();
  return pretraining;
}

Deno.test("examples/pretrain_folder.ts pre-trains on a folder and saves weights that rebuild its UNet", async () => {
  const r = await pretrain();
  assert.match(r.stdout, /^3 images, a UNet of \d+ parameters, 2 steps$/m);
  const loss = Number(/step 2: SSIM loss ([\d.]+)/.exec(r.stdout)?.[1]);
  assert.ok(loss > 0 && loss <= 1, `an SSIM loss in (0, 1], got ${loss}`);
  const { options } = JSON.parse(await Deno.readTextFile(`${run}/config.json`));
  assert.equal(options.method, "mdm");
  assert.equal(options.unet.imageSize, 32);
  // Strict loading: every key of the UNet the config describes is in the file, in its shape.
  const { model, report } = loadModel(`${run}/model.safetensors`, (vb) => new UNet(options.unet, vb));
  assert.equal(report.loaded.length, model.stateDict().size);
  for (const t of model.stateDict().values()) t.dispose();
});

Deno.test("examples/features_head.ts trains a pixel head on a checkpoint's features", async () => {
  await pretrain();
  const r = await runScriptOk("examples/features_head.ts", [
    `${dir}/images/tile0.png`,
    `${dir}/mask0.png`,
    `${run}/model.safetensors`,
    ...["--steps", "5", "--threads", "1"],
  ]);
  // The feature width it reports is the sum of the named decoder blocks' channels.
  const [, size, channels, blocks] = /features: (\d+×\d+) pixels × (\d+) channels from decoder blocks ([\d, ]+)/
    .exec(r.stdout) ?? [];
  assert.equal(size, "64×64");
  const { options } = JSON.parse(await Deno.readTextFile(`${run}/config.json`));
  const { model } = loadModel(`${run}/model.safetensors`, (vb) => new UNet(options.unet, vb));
  const expected = featureChannels(model, { blocks: blocks.split(", ").map(Number), timesteps: [50] });
  for (const t of model.stateDict().values()) t.dispose();
  assert.equal(Number(channels), expected);
  const [, accuracy, dice] = /training accuracy ([\d.]+)%, Dice ([\d.]+)/.exec(r.stdout) ?? [];
  assert.ok(Number(accuracy) >= 0 && Number(accuracy) <= 100, r.stdout);
  assert.ok(Number(dice) >= 0 && Number(dice) <= 1, r.stdout);
});

Deno.test("the examples explain their arguments instead of failing on missing ones", async () => {
  for (const script of ["examples/pretrain_folder.ts", "examples/features_head.ts"]) {
    const r = await runScript(script, []);
    assert.equal(r.code, 2, `${script}: ${r.stderr}`);
    assert.match(r.stderr, /^usage: /);
  }
});
