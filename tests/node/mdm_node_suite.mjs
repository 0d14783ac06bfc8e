// The npm package under Node, run by tests/npm_test.ts with `node --test` in a folder where the packed
// tarball was installed. MDM_NPM_FIXTURE holds what Deno computed on the same weights (fixture.json,
// weights.safetensors, the input and the output's bytes) and a folder of synthetic training images.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import test from "node:test";
import { full, manualSeed, noGrad, ones, randn, setNumThreads, tensor, tidy, torchVersion } from "mdm-torch";
import { loadModel } from "mdm-torch/io";
import { PRETRAIN_DEFAULTS, Pretrainer } from "mdm-torch/mdm";
import { UNet } from "mdm-torch/unet";

const FIXTURE = process.env.MDM_NPM_FIXTURE;
setNumThreads(1);

test("tensor ops give the values computed by hand", () => {
  const a = tensor(new Float32Array([1, 2, 3, 4]), { shape: [2, 2] });
  assert.deepEqual(Array.from(a.add(1).toArray()), [2, 3, 4, 5]);
  assert.deepEqual(Array.from(a.matmul(a).toArray()), [7, 10, 15, 22]); // [[1,2],[3,4]]²
  assert.equal(a.sum().item(), 10);
  assert.deepEqual([...ones([2, 3]).reshape(3, 2).shape], [3, 2]);
  assert.deepEqual(Array.from(full([3], 7, { dtype: "int64" }).toArray(), Number), [7, 7, 7]);
  manualSeed(0); // torch.manual_seed(0); torch.randn(3) in PyTorch
  assert.deepEqual(Array.from(randn([3]).toArray(), (v) => Math.round(v * 1e4) / 1e4), [1.541, -0.2934, -2.1788]);
  assert.throws(() => ones([2]).reshape(3), /reshape\(\[2\]\)/);
  assert.match(torchVersion(), /^\d+\.\d+/);
});

test("a UNet forward pass on Deno's weights equals Deno's output bit for bit", () => {
  const fixture = JSON.parse(readFileSync(join(FIXTURE, "fixture.json"), "utf8"));
  const { model } = loadModel(join(FIXTURE, "weights.safetensors"), (vb) => new UNet(fixture.unet, vb));
  model.eval();
  const raw = readFileSync(join(FIXTURE, "input.f32"));
  const x = tensor(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), { shape: fixture.inputShape });
  const t = tensor(new BigInt64Array(fixture.timesteps.map(BigInt)));
  const out = noGrad(() => model.forward(x, t).output);
  const expected = readFileSync(join(FIXTURE, "output.f32"));
  const got = out.toArray();
  assert.deepEqual([...out.shape], fixture.outputShape);
  assert.ok(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(expected), "outputs differ");
});

test("five pre-training steps run and lower nothing to NaN", () => {
  const trainer = new Pretrainer({
    ...PRETRAIN_DEFAULTS,
    unet: { imageSize: 16, modelChannels: 32, channelMult: [1, 2], attentionResolutions: [8], numResBlocks: 1 },
    batch: 2,
    microBatch: 2,
  });
  manualSeed(1);
  const batch = randn([2, 3, 16, 16]).clamp(-1, 1);
  const losses = [];
  for (let i = 0; i < 5; i++) losses.push(tidy(() => trainer.trainStep(batch)).loss);
  assert.equal(trainer.step, 5);
  for (const loss of losses) assert.ok(Number.isFinite(loss) && loss >= 0 && loss <= 1, `loss ${loss}`);
});

test("the installed programs pre-train and segment on the synthetic set", () => {
  const bin = (name) => join(process.cwd(), "node_modules", ".bin", name);
  const out = join(FIXTURE, "runs");
  const env = { ...process.env, NO_COLOR: "1" };
  const train = spawnSync(bin("mdm-train"), [
    "--steps",
    "3",
    "--checkpoint-every",
    "3",
    "--threads",
    "1",
    "--cache",
    join(FIXTURE, "synthetic"),
    "--out",
    join(out, "pretrain"),
  ], { env, encoding: "utf8" });
  assert.equal(train.status, 0, `mdm-train failed:\n${train.stderr}`);
  assert.ok(existsSync(join(out, "pretrain", "model.safetensors")));
  const segment = spawnSync(bin("mdm-segment"), [
    "--checkpoint",
    join(out, "pretrain", "model.safetensors"),
    "--cache",
    join(FIXTURE, "synthetic"),
    "--labels",
    "2",
    "--heads",
    "1",
    "--min-epochs",
    "1",
    "--max-epochs",
    "2",
    "--threads",
    "1",
    "--baseline-steps",
    "2",
    "--out",
    join(out, "segment"),
  ], { env, encoding: "utf8" });
  assert.equal(segment.status, 0, `mdm-segment failed:\n${segment.stderr}`);
  assert.ok(existsSync(join(out, "segment", "report.md")));
});
