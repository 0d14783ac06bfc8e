// segment.ts end to end, as a user runs it: a brief pre-training of a tiny UNet with train.ts, then
// few-shot segmentation of the synthetic nuclei from its features (3 labelled images, 2 heads, the
// supervised UNet beside them), checking report.json, report.md and the overlays; and the command
// line's errors. Both scripts run as subprocesses.
import assert from "node:assert/strict";
import { type Image, readImage, writePng } from "../src/data/image.ts";
import { ensureSyntheticDataset } from "../src/data/synthetic.ts";
import { type Run, runScript as deno, runScriptOk as ok, tempDir } from "./helpers/scripts.ts";

const TMP = tempDir("mdm_segment_test_");

// The synthetic set (16 training and 8 test tiles of 256×256) is generated once and shared.
const CACHE = `${TMP}/cache`;
await ensureSyntheticDataset(CACHE, {});

// A UNet small enough to pre-train in seconds: decoder blocks 0..3, the default blocks 1, 2
// (the middle ones), 96 feature channels.
const PRE = `${TMP}/pretrain`;
const CHECKPOINT = `${PRE}/model.safetensors`;
let pretrained: Promise<Run> | null = null;
/** Pre-trains once, for whichever test needs the checkpoint first. */
function pretrain(): Promise<Run> {
  pretrained ??= ok("train.ts", [
    ...["--steps", "60", "--crop", "32", "--model-channels", "32", "--channel-mult", "1,2"],
    ...["--num-res-blocks", "1", "--attention-resolutions", "16", "--num-head-channels", "32"],
    ...["--batch", "8", "--threads", "2", "--picture-every", "0", "--out", PRE, "--cache", CACHE],
  ]);
  return pretrained;
}

interface MeanStd {
  mean: number;
  std: number;
  n: number;
}
type Scores = Record<"dice" | "iouPerImage" | "glasIoUFromDice" | "ajiBinaryAuthors" | "ajiInstanceChallenge", MeanStd>;

const pct = (x: number) => (100 * x).toFixed(2);

Deno.test("pre-train, then few-shot segmentation: heads far above trivial predictors, report and overlays", async () => {
  await pretrain();
  const out = `${TMP}/segment`;
  const run = await ok("segment.ts", [
    ...["--checkpoint", CHECKPOINT, "--cache", CACHE, "--labels", "3", "--heads", "2", "--batch", "4"],
    ...["--min-epochs", "5", "--max-epochs", "10", "--patience", "3", "--overlays", "2", "--threads", "2"],
    ...["--baseline-steps", "60", "--out", out],
  ]);

  assert.match(run.stderr, /^synthetic: 16 training and 8 test images, 2 classes$/m, "the dataset's counts");
  const report = JSON.parse(Deno.readTextFileSync(`${out}/report.json`));
  // The first 3 training tiles in sorted order, all 8 test tiles, the pre-training's method.
  assert.deepEqual(report.labelledImages, ["syn_0000", "syn_0001", "syn_0002"]);
  assert.equal(report.testImages, 8);
  assert.equal(report.method, "mdm");
  assert.deepEqual(report.features.blocks, [1, 2]);
  assert.deepEqual(report.features.timesteps, [50]);
  assert.equal(report.features.channels, 64 + 32); // decoder blocks 1 (64 channels) and 2 (32)
  assert.equal(report.heads.count, 2);
  assert.equal(report.heads.training.length, 2);
  for (const h of report.heads.training) {
    // Early stopping within the bounds given; one step per epoch (3 images, 4 crops per step).
    assert.ok(h.epochs >= 5 && h.epochs <= 10, `epochs ${h.epochs}`);
    assert.equal(h.steps, h.epochs);
    assert.ok(Number.isFinite(h.finalLoss) && h.finalLoss < Math.LN2, `final loss ${h.finalLoss}`);
  }

  const r = report.results as {
    mdmHeads: Scores;
    supervisedUNet: Scores;
    trivialAllBackground: { dice: number };
    trivialAllForeground: { dice: number };
  };
  // All background scores Dice 0 on tiles with nuclei; all foreground 2p / (1 + p) for nucleus share p.
  assert.equal(r.trivialAllBackground.dice, 0);
  assert.ok(r.trivialAllForeground.dice > 0.1 && r.trivialAllForeground.dice < 0.6, `${r.trivialAllForeground.dice}`);
  // The heads learned something the trivial predictors cannot: measured 0.76 against 0.32 here.
  const heads = r.mdmHeads.dice;
  assert.equal(heads.n, 2);
  const trivial = Math.max(r.trivialAllBackground.dice, r.trivialAllForeground.dice);
  assert.ok(heads.mean > trivial + 0.3, `heads' Dice ${heads.mean}, trivial ${trivial}`);
  // Every metric present, for the heads and the supervised UNet beside them, in [0, 1]; the
  // authors' binary AJI is the per-image IoU (they computed AJI on binary masks), GlaS's IoU is Dice / (2 − Dice).
  for (const [who, s, n] of [["heads", r.mdmHeads, 2], ["supervised", r.supervisedUNet, 1]] as const) {
    for (const key of ["dice", "iouPerImage", "glasIoUFromDice", "ajiBinaryAuthors", "ajiInstanceChallenge"] as const) {
      const m = s[key];
      assert.ok(m && m.n === n && m.mean >= 0 && m.mean <= 1, `${who} ${key}: ${JSON.stringify(m)}`);
    }
    assert.equal(s.ajiBinaryAuthors.mean, s.iouPerImage.mean);
    if (n === 1) {
      const d = s.dice.mean;
      assert.ok(Math.abs(s.glasIoUFromDice.mean - d / (2 - d)) < 1e-12);
    }
  }
  assert.ok(r.supervisedUNet.dice.mean > 0, "the supervised UNet predicted some nuclei");
  assert.equal(report.supervised.loss, "ce");
  // Checks every 25 steps with patience 3 cannot stop it before --baseline-steps 60: it runs to the cap.
  assert.equal(report.supervised.steps, 60, "the supervised UNet trains up to --baseline-steps");

  // report.md: the table's header and one row per method, with report.json's numbers.
  const md = Deno.readTextFileSync(`${out}/report.md`);
  assert.equal(run.stdout.trim(), md.trim(), "report.md is what was printed");
  const rows = md.split("\n").filter((l) => l.startsWith("|"));
  assert.match(rows[0], /^\| method \| Dice \| IoU \(per image\) \|/);
  const row = (name: string) => rows.find((l) => l.startsWith(`| ${name}`));
  const mdm = row("MDM + pixel MLP (2 heads)"), sup = row("supervised UNet from scratch");
  assert.ok(mdm && sup, `missing table rows in:\n${md}`);
  assert.ok(mdm.includes(`| ${pct(heads.mean)} ± ${pct(heads.std)} |`), mdm);
  assert.ok(sup.includes(`| ${pct(r.supervisedUNet.dice.mean)} ± – |`), sup);
  assert.ok(row("all background (trivial)")?.includes(`| ${pct(r.trivialAllBackground.dice)} |`));
  assert.ok(row("all foreground (trivial)")?.includes(`| ${pct(r.trivialAllForeground.dice)} |`));

  // Overlays: the first 2 test tiles as image | truth | heads | supervised, 256² with 4 px gaps.
  const overlays = [...Deno.readDirSync(`${out}/overlays`)].map((e) => e.name).sort();
  assert.deepEqual(overlays, ["00-syn_0016.png", "01-syn_0017.png"]);
  for (const name of overlays) {
    const img = await readImage(`${out}/overlays/${name}`);
    assert.deepEqual([img.width, img.height, img.channels], [4 * 256 + 5 * 4, 256 + 2 * 4, 3], name);
  }
});

Deno.test("--dataset folder: links followed, the class count read from the training masks (here 3), and printed", async () => {
  await pretrain();
  // 64² corners of synthetic tiles as a folder dataset of links; their nucleus masks (0, 1) get a
  // third class (2) in the top-left 16² and 255 (ignore) in the last row.
  const ds = `${TMP}/folder3`, store = `${TMP}/folder3-store`, set = await ensureSyntheticDataset(CACHE, {});
  Deno.mkdirSync(store);
  const corner = (img: Image): Image => {
    const c = img.channels, data = new Uint8Array(64 * 64 * c);
    for (let y = 0; y < 64; y++) data.set(img.data.subarray(y * img.width * c, (y * img.width + 64) * c), y * 64 * c);
    return { width: 64, height: 64, channels: c, data };
  };
  for (const [split, n] of [["train", 2], ["test", 1]] as const) {
    Deno.mkdirSync(`${ds}/${split}/images`, { recursive: true });
    Deno.mkdirSync(`${ds}/${split}/masks`, { recursive: true });
    for (let i = 0; i < n; i++) {
      const k = split === "train" ? i : 16 + i;
      const image = [...set.train.images, ...set.test.images][k], mask = [...set.train.masks, ...set.test.masks][k];
      await writePng(`${store}/${split}${i}.png`, corner(await readImage(image)));
      Deno.symlinkSync(`${store}/${split}${i}.png`, `${ds}/${split}/images/t${i}.png`);
      const m = corner(await readImage(mask));
      const data = Uint8Array.from(
        { length: 64 * 64 },
        (_, p) => p >= 63 * 64 ? 255 : (p % 64 < 16 && p < 16 * 64) ? 2 : m.data[p * m.channels],
      );
      await writePng(`${ds}/${split}/masks/t${i}.png`, { width: 64, height: 64, channels: 1, data });
    }
  }
  const run = await ok("segment.ts", [
    ...["--checkpoint", CHECKPOINT, "--dataset", "folder", "--data", ds, "--labels", "2", "--heads", "1"],
    ...["--batch", "4", "--min-epochs", "1", "--max-epochs", "2", "--no-baseline", "--overlays", "0", "--threads", "1"],
    ...["--out", `${TMP}/folder3-out`],
  ]);
  assert.match(run.stderr, new RegExp(`^${ds}: 2 training and 1 test images, 3 classes \\(${ds}\\)$`, "m"));
  assert.match(run.stdout, /mIoU/, "a 3-class task is scored by mIoU");
});

Deno.test("segment.ts refuses bad command lines with exit code 2 and a message naming the problem", async (t) => {
  await pretrain();
  const base = ["--checkpoint", CHECKPOINT, "--cache", CACHE, "--threads", "1", "--out", `${TMP}/refused`];
  const cases: [string, string[], RegExp][] = [
    ["more labels than training images", ["--labels", "17"], /--labels 17: the training split has 16 images/],
    [
      "a missing checkpoint",
      ["--checkpoint", `${PRE}/missing.safetensors`],
      /--checkpoint \S*missing\.safetensors: not found/,
    ],
    [
      "a checkpoint in a folder that does not exist (its config.json is missing too)",
      ["--checkpoint", `${TMP}/nowhere/model.safetensors`],
      /--checkpoint \S*nowhere\/model\.safetensors: not found/,
    ],
    ["--dataset monuseg without --data", ["--dataset", "monuseg"], /--dataset monuseg needs --data/],
    ["an unknown dataset", ["--dataset", "imagenet"], /--dataset/],
    ["zero heads", ["--heads", "0"], /--heads must be between 1 and 1000, got 0/],
  ];
  for (const [what, args, message] of cases) {
    await t.step(what, async () => {
      const r = await deno("segment.ts", [...base, ...args]);
      assert.equal(r.code, 2, `exit code ${r.code}, stderr:\n${r.stderr.slice(-2000)}`);
      assert.match(r.stderr, message);
      // One clear line, not a stack trace.
      assert.doesNotMatch(r.stderr, /\n\s+at /, r.stderr);
    });
  }
});
