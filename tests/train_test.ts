// train.ts end to end, as a user runs it: a short real pre-training of a tiny UNet on the synthetic
// data (loss goes down, every output is written and readable), exact resume (byte-identical weights
// after 10 + resume + 10 steps vs 20 in one go, for MDM and DDPM), SIGKILL at random moments with a
// checkpoint every step (every listed checkpoint stays complete and loadable, and --resume ends
// where an uninterrupted run ends), --help and --pad-small (bad command lines: cli_test.ts).
import assert from "node:assert/strict";
import { loadSafetensors } from "../mod.ts";
import { PRETRAIN_SPEC } from "../src/cli/pretrain_flags.ts";
import { RandomCropLoader } from "../src/data/folder.ts";
import { type Image, readImage, writePng } from "../src/data/image.ts";
import { drawText, textWidth } from "../src/data/text.ts";
import { tensorToImages } from "../src/report/grid.ts";
import { ensureSyntheticDataset } from "../src/data/synthetic.ts";
import { listCheckpoints, readTrainState, restoreTrainer } from "../src/mdm/train_state.ts";
import { runScriptOk, scriptCommand, tempDir } from "./helpers/scripts.ts";

const TMP = tempDir("mdm_train_test_");

// The synthetic set is generated once here (~2 s) and shared by every run below.
const CACHE = `${TMP}/cache`;
await ensureSyntheticDataset(CACHE, {});

// A UNet small enough that a step takes tens of milliseconds. One libtorch thread: on a shared
// two-core machine two threads per run slow down several-fold as soon as another process competes
// (30 steps: 2.7 s with one thread, 5.6 s with two, under a load of 2).
const TINY = [
  ...["--crop", "32", "--model-channels", "32", "--channel-mult", "1,2", "--num-res-blocks", "1"],
  ...["--attention-resolutions", "16", "--num-head-channels", "32", "--batch", "4", "--threads", "1"],
  ...["--cache", CACHE],
];

const command = (args: string[]) => scriptCommand("train.ts", args);
const trainOk = (args: string[]) => runScriptOk("train.ts", args);

interface LogEntry {
  step: number;
  loss: number;
}

function readLog(out: string): LogEntry[] {
  return Deno.readTextFileSync(`${out}/log.jsonl`).split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function assertSameBytes(a: string, b: string): void {
  const x = Deno.readFileSync(a), y = Deno.readFileSync(b);
  assert.ok(x.length === y.length && x.every((v, i) => v === y[i]), `${a} and ${b} differ`);
}

Deno.test("a 30-step pre-training lowers the SSIM loss and writes every output", async () => {
  const out = `${TMP}/short`;
  await trainOk([...TINY, "--steps", "30", "--picture-every", "10", "--out", out]);

  const log = readLog(out);
  assert.deepEqual(log.map((e) => e.step), range(1, 30), "one log line per step");
  for (const e of log) assert.ok(Number.isFinite(e.loss) && e.loss >= 0 && e.loss <= 1, `SSIM loss ${e.loss}`);
  // The run is seeded and deterministic; from ~0.47 it reaches ~0.32. A 10% drop is far from noise.
  const first = mean(log.slice(0, 5).map((e) => e.loss)), last = mean(log.slice(-5).map((e) => e.loss));
  assert.ok(last < 0.9 * first, `loss went from ${first} (first 5 steps) to ${last} (last 5)`);

  const config = JSON.parse(Deno.readTextFileSync(`${out}/config.json`));
  assert.equal(config.options.method, "mdm");
  assert.equal(config.options.loss, "ssim");
  assert.equal(config.options.unet.imageSize, 32);
  assert.equal(config.data.images, 24, "the synthetic set's 16 train + 8 test images");

  // Weights: guided-diffusion's keys, model and EMA alike, as many values as config.json counts.
  using model = loadSafetensors(`${out}/model.safetensors`);
  using ema = loadSafetensors(`${out}/ema.safetensors`);
  const keys = [...model.keys()].sort();
  assert.deepEqual([...ema.keys()].sort(), keys, "the EMA has the model's keys");
  for (const k of ["input_blocks.0.0.weight", "middle_block.1.qkv.weight", "out.2.weight"]) {
    assert.ok(keys.includes(k), k);
  }
  const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
  assert.equal(keys.reduce((n, k) => n + numel(model.get(k)!.shape), 0), config.parameters);
  // out.2 starts at zero and is trained; its EMA (0.999) has moved far less.
  const w = model.get("out.2.weight")!, we = ema.get("out.2.weight")!;
  assert.ok(w.abs().amax().item() > 0, "the output conv was trained");
  assert.ok(w.sub(we).abs().amax().item() > 0, "the EMA differs from the weights");

  // Pictures at steps 10, 20, 30: 4 rows of input | (masked, output) × 3 timesteps, 32² tiles with
  // 4 px gaps, under a title line and two caption lines (5×7 text), row numbers on the left:
  // 4 + 5 + 4 + 7·32 + 6·4 + 4 = 265 wide, 4 + 7 + 4 + 7 + 2 + 7 + 4 + 4·32 + 3·4 + 4 = 179 high.
  const pictures = [...Deno.readDirSync(`${out}/pictures`)].map((e) => e.name).sort();
  assert.deepEqual(pictures, ["step-0000010.png", "step-0000020.png", "step-0000030.png"]);
  // The first column is the clean crops the pictures are drawn from (the loader's seed + 1, no flips).
  const set = await ensureSyntheticDataset(CACHE, {});
  const named = [];
  for (const p of [...set.train.images, ...set.test.images]) named.push({ name: p, image: await readImage(p) });
  const crops = tensorToImages(new RandomCropLoader(named, { cropSize: 32, seed: 1, flip: false }).nextBatch(4));
  for (const p of pictures) {
    const img = await readImage(`${out}/pictures/${p}`);
    assert.deepEqual([img.width, img.height, img.channels], [265, 179, 3], p);
    crops.forEach((crop, r) => {
      const [x0, y0] = [13, 35 + r * 36];
      for (let y = 0; y < 32; y++) {
        const row = img.data.subarray(((y0 + y) * 265 + x0) * 3, ((y0 + y) * 265 + x0 + 32) * 3);
        assert.deepEqual([...row], [...crop.data.subarray(y * 96, (y + 1) * 96)], `${p}: row ${r} is not crop ${r}`);
      }
    });
    // Captions: the title, "t=250" over the first pair, "input" over the first column, and the short
    // forms "mask" and "out" of "masked" and "output" (35 px, wider than a 32 px tile) over theirs.
    const caption = (x: number, y: number, text: string) => {
      const w = textWidth(text);
      const expected: Image = { width: w, height: 7, channels: 3, data: new Uint8Array(w * 7 * 3).fill(255) };
      drawText(expected, 0, 0, text);
      for (let dy = 0; dy < 7; dy++) {
        const got = img.data.subarray(((y + dy) * 265 + x) * 3, ((y + dy) * 265 + x + w) * 3);
        assert.deepEqual([...got], [...expected.data.subarray(dy * w * 3, (dy + 1) * w * 3)], `${p}: "${text}"`);
      }
    };
    caption(4, 4, `mdm step ${Number(p.slice(5, 12))}`);
    caption(13 + 32 + 4 + Math.floor((68 - textWidth("t=250")) / 2), 15, "t=250");
    caption(13 + Math.floor((32 - textWidth("input")) / 2), 24, "input");
    caption(13 + 36 + Math.floor((32 - textWidth("mask")) / 2), 24, "mask");
    caption(13 + 72 + Math.floor((32 - textWidth("out")) / 2), 24, "out");
  }

  const svg = Deno.readTextFileSync(`${out}/loss.svg`);
  assert.match(svg, /^(<\?xml[^>]*>\s*)?<svg[\s>]/, "loss.svg starts with an svg element");
  assert.match(svg, /<\/svg>\s*$/, "loss.svg is complete");
  assert.match(svg, /<path[^>]* d="M\s*[\d.-]+[ ,][\d.-]+(\s*L\s*[\d.-]+[ ,][\d.-]+)+/, "loss.svg draws a line");

  const summary = JSON.parse(Deno.readTextFileSync(`${out}/summary.json`));
  assert.equal(summary.steps, 30);
  assert.ok(summary.lossLastTenth < summary.lossFirstTenth, "summary: the loss went down");
  assert.equal(summary.outputs.weights, `${out}/model.safetensors`);
});

/** N steps at once vs N/2, then --resume to N: the same weights, EMA and losses, to the byte. */
async function resumeEquivalence(method: "mdm" | "ddpm", total: number): Promise<void> {
  const half = total / 2;
  const flags = [...TINY, "--method", method, "--checkpoint-every", String(half), "--picture-every", "0"];
  const whole = `${TMP}/${method}-whole`, split = `${TMP}/${method}-split`;
  await trainOk([...flags, "--steps", String(total), "--out", whole]);
  await trainOk([...flags, "--steps", String(half), "--out", split]);
  const resumed = await trainOk([...flags, "--steps", String(total), "--resume", "--out", split]);
  assert.match(resumed.stderr, new RegExp(`resumed from .*step-${String(half).padStart(7, "0")} at step ${half}`));
  assertSameBytes(`${whole}/model.safetensors`, `${split}/model.safetensors`);
  assertSameBytes(`${whole}/ema.safetensors`, `${split}/ema.safetensors`);
  const a = readLog(whole), b = readLog(split);
  assert.deepEqual(b.map((e) => e.step), range(1, total), "the resumed log has every step once");
  assert.deepEqual(b.map((e) => e.loss), a.map((e) => e.loss), "identical losses, before and after the resume");
}

Deno.test("resume: 10 + --resume + 10 steps equal 20 steps byte for byte (MDM)", () => resumeEquivalence("mdm", 20));
Deno.test("resume: 5 + --resume + 5 steps equal 10 steps byte for byte (DDPM)", () => resumeEquivalence("ddpm", 10));

/**
 * What a kill must never break: every checkpoint listCheckpoints reports is complete (state.json
 * parses and names its step, both safetensors load with the model's keys) and restores into a
 * fresh Pretrainer, optimizer and random streams included; unfinished `.tmp-` folders are not
 * reported. Returns the newest step.
 */
function checkCheckpoints(dir: string): number {
  const found = listCheckpoints(dir);
  assert.ok(found.length > 0, "a checkpoint survives");
  for (const { step, path } of found) {
    assert.ok(!path.includes(".tmp-"), `${path}: a temporary folder is listed as a checkpoint`);
    const state = readTrainState(path);
    assert.equal(state.step, step, `${path}: state.json names step ${state.step}`);
    const trainer = restoreTrainer(path, state);
    const names = trainer.model.namedParameters().map(([k]) => k).sort();
    for (const file of ["model", "ema"]) {
      using t = loadSafetensors(`${path}/${file}.safetensors`);
      assert.deepEqual([...t.keys()].sort(), names, `${path}/${file}.safetensors keys`);
    }
    assert.equal(trainer.step, step);
  }
  return found.at(-1)!.step;
}

/** A train.ts run in the background: its exit, and its first checkpoint, can be waited for. */
class Background {
  readonly child: Deno.ChildProcess;
  exited = false;
  readonly status: Promise<Deno.CommandStatus>;
  readonly stderr: Promise<string>;

  constructor(args: string[], readonly checkpoints: string) {
    this.child = command(args).spawn();
    this.status = this.child.status.then((s) => {
      this.exited = true;
      return s;
    });
    // Drain both pipes so that the child never blocks on a full one.
    this.child.stdout.pipeTo(new WritableStream());
    this.stderr = new Response(this.child.stderr).text();
  }

  /** Resolves once a complete checkpoint exists (or the run ended without one). */
  async firstCheckpoint(): Promise<void> {
    while (!this.exited && listCheckpoints(this.checkpoints).length === 0) await sleep(10);
  }
}

Deno.test({
  name: "SIGKILL at random moments, a checkpoint every step: checkpoints stay whole, --resume finishes the run",
  // Children are awaited explicitly; the sanitizers would flag the polling timers.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const END = 40;
    const flags = [...TINY, "--checkpoint-every", "1", "--keep-checkpoints", "2", "--picture-every", "0"];
    // An uninterrupted run: what every killed-and-resumed run must end with (training is seeded
    // and deterministic), and the time from its first checkpoint to its end, over which the kills
    // are spread.
    const reference = `${TMP}/kill-reference`;
    const ref = new Background([...flags, "--steps", String(END), "--out", reference], `${reference}/checkpoints`);
    await ref.firstCheckpoint();
    const t0 = performance.now();
    const refStatus = await ref.status;
    const spanMs = performance.now() - t0;
    assert.equal(refStatus.code, 0, `the reference run failed:\n${(await ref.stderr).slice(-3000)}`);

    for (let i = 0; i < 5; i++) {
      await t.step(`kill ${i + 1} of 5`, async () => {
        // Kill i lands at a random moment of the i-th fifth of a run: early steps, late steps,
        // the final saves (or, if this run is slower than the reference, anywhere before them).
        const delay = Math.round(spanMs * (i + Math.random()) / 5);
        const out = `${TMP}/kill-${i}`, ckpt = `${out}/checkpoints`;
        const run = new Background([...flags, "--steps", String(END), "--out", out], ckpt);
        let killed = false;
        try {
          // --resume needs one checkpoint; wait for it rather than guess how long startup takes.
          await run.firstCheckpoint();
          await sleep(delay);
        } finally {
          if (!run.exited) {
            run.child.kill("SIGKILL");
            killed = true;
          }
        }
        const { signal } = await run.status;
        const stderr = await run.stderr;
        assert.ok(listCheckpoints(ckpt).length > 0, `no checkpoint was written:\n${stderr.slice(-2000)}`);
        if (killed) assert.equal(signal, "SIGKILL");

        const newest = checkCheckpoints(ckpt);
        // Where it landed, for the record (any moment must do).
        console.log(
          `${delay} ms after the first checkpoint: ` +
            (killed ? `killed with step ${newest} the newest checkpoint` : "the run had finished"),
        );
        await trainOk([...flags, "--steps", String(END), "--resume", "--out", out]);
        checkCheckpoints(ckpt);
        assert.equal(listCheckpoints(ckpt).at(-1)!.step, END);
        assert.deepEqual(readLog(out).map((e) => e.step), range(1, END), "one log line per step after the resume");
        assertSameBytes(`${reference}/model.safetensors`, `${out}/model.safetensors`);
        assertSameBytes(`${reference}/ema.safetensors`, `${out}/ema.safetensors`);
      });
    }
  },
});

// Bad command lines, files and checkpoints are tests/cli_test.ts's table.
Deno.test("command line: --help lists every flag; --pad-small trains on an image smaller than the crop", async (t) => {
  await t.step("--help prints every flag of PRETRAIN_SPEC and exits 0", async () => {
    const r = await trainOk(["--help"]);
    for (const key of Object.keys(PRETRAIN_SPEC)) {
      const flag = "--" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
      // Not just a prefix: --resume must appear on its own, not only inside --resume-from.
      assert.match(r.stdout, new RegExp(`${flag}(?![\\w-])`), `${flag} missing from --help`);
    }
  });

  const small = `${TMP}/cli-small`;
  Deno.mkdirSync(small, { recursive: true });
  const pixels = Uint8Array.from({ length: 16 * 20 * 3 }, (_, i) => (i * 37) % 256);
  await writePng(`${small}/tiny.png`, { width: 16, height: 20, channels: 3, data: pixels });

  await t.step("--pad-small trains on the small image", async () => {
    const dir = `${TMP}/cli-pad`;
    await trainOk([...TINY, "--data", small, "--pad-small", "--steps", "2", "--out", dir]);
    assert.deepEqual(readLog(dir).map((e) => e.step), [1, 2]);
    const config = JSON.parse(Deno.readTextFileSync(`${dir}/config.json`));
    assert.equal(config.data.images, 1);
    assert.ok(Deno.statSync(`${dir}/model.safetensors`).size > 0);
  });
});

const MONUSEG = Deno.env.get("MDM_MONUSEG") ?? new URL("../../shared/data/monuseg", import.meta.url).pathname;
const HAVE_MONUSEG = (() => {
  try {
    return Deno.statSync(`${MONUSEG}/train/images`).isDirectory;
  } catch {
    return false;
  }
})();
if (!HAVE_MONUSEG) console.log(`train_test: skipping the MoNuSeg root test: ${MONUSEG}/train/images not found`);

Deno.test({
  name: "--data on the MoNuSeg root (the README's example) trains on its 44 images, not its 30 masks",
  ignore: !HAVE_MONUSEG,
  fn: async () => {
    const out = `${TMP}/monuseg`;
    const r = await trainOk([...TINY, "--data", MONUSEG, "--steps", "1", "--picture-every", "0", "--out", out]);
    assert.match(
      r.stderr,
      /44 images in \S+monuseg: 14 in test\/images, 30 in train\/images; skipped label folders test\/annotations, train\/annotations, train\/masks/,
    );
    assert.equal(JSON.parse(Deno.readTextFileSync(`${out}/config.json`)).data.images, 44);
  },
});

Deno.test("--data on a folder of links trains on the linked images and says how many it found", async () => {
  const store = `${TMP}/link-store`, links = `${TMP}/links`;
  Deno.mkdirSync(store, { recursive: true });
  Deno.mkdirSync(`${links}/more`, { recursive: true });
  for (let i = 0; i < 3; i++) {
    const data = Uint8Array.from({ length: 40 * 40 * 3 }, (_, k) => (k * (i + 3) * 31) % 256);
    await writePng(`${store}/im${i}.png`, { width: 40, height: 40, channels: 3, data });
  }
  Deno.symlinkSync(`${store}/im0.png`, `${links}/a.png`);
  Deno.symlinkSync(`${store}/im1.png`, `${links}/more/b.png`);
  Deno.symlinkSync(store, `${links}/store`); // a linked folder: im0..im2 once more, by other paths
  Deno.symlinkSync(`${store}/gone.png`, `${links}/gone.png`); // a link to nothing
  const out = `${TMP}/links-out`;
  const r = await trainOk([...TINY, "--data", links, "--steps", "1", "--picture-every", "0", "--out", out]);
  assert.match(r.stderr, /5 images in \S+links: 1 in \., 1 in more, 3 in store/);
  assert.match(r.stderr, /warning: --data \S+links: skipped 1 link to nothing or to a folder already read: gone\.png/);
  assert.equal(JSON.parse(Deno.readTextFileSync(`${out}/config.json`)).data.images, 5);
});
