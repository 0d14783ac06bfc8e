// bench/monuseg.ts end to end on the real MoNuSeg 2018 images, at a tiny size (the quick recipe with
// 2 pre-training steps, one head of one epoch, images shrunk 4×, one test image): every phase
// runs, the report names every predictor with scores in range beside the paper's Table 1, the
// pre-training took the 44 images and not the masks, and bad command lines fail with one line.
// Skips when ../shared/data/monuseg is absent.
import assert from "node:assert/strict";
import { readImage } from "../src/data/image.ts";
import { ROOT, runScript, runScriptOk, tempDir } from "./helpers/scripts.ts";

const DATA = `${ROOT}../shared/data/monuseg`;
const present = (await Deno.stat(`${DATA}/test/images`).catch(() => null))?.isDirectory ?? false;
if (!present) console.warn(`tests/monuseg_test.ts: skipped, ${DATA} is absent (the MoNuSeg 2018 copy)`);

const TMP = tempDir("mdm_monuseg_test_");

Deno.test({
  name: "bench/monuseg.ts: a tiny run end to end writes a readable report",
  ignore: !present,
  fn: async () => {
    const out = `${TMP}/run`;
    const run = await runScriptOk("bench/monuseg.ts", [
      ...["--scale", "quick", "--data", DATA, "--out", out, "--threads", "2"],
      ...["--downscale", "4", "--steps", "2", "--heads", "1", "--max-epochs", "1", "--seeds", "1"],
      ...["--supervised-steps", "2", "--labels", "1,3", "--eval-images", "1", "--overlays", "1"],
      ...["--blocks", "3,4,5", "--mdm-t", "0", "--ddpm-blocks", "3,4"],
    ]);
    assert.match(run.stdout, /report: .*report\.md/);
    // The pre-training saw the 30 + 14 images, not the 30 masks beside them.
    assert.match(run.stderr, /pre-training images: 30 from .*train\/images and 14 from .*test\/images, downscaled 4×/);

    const report = JSON.parse(await Deno.readTextFile(`${out}/report.json`));
    assert.equal(report.split.evaluation, "test");
    assert.equal(report.split.pretrainingImages, 44);
    assert.deepEqual(report.split.evalImages, ["TCGA-2Z-A9J9-01A-01-TS1"], "the first test image in sorted order");
    assert.deepEqual(Object.keys(report.split.labelled), ["1", "3"]);
    assert.equal(report.split.labelled["3"].length, 3);
    assert.deepEqual(report.pretraining.mdm.steps, 2);
    assert.deepEqual(report.pretraining.ddpm.steps, 2, "DDPM gets MDM's budget");
    const kinds = ["mdm", "ddpm", "random", "rgb", "supervised"];
    assert.deepEqual(report.results.map((r: { kind: string; labels: number }) => `${r.kind}/${r.labels}`), [
      ...kinds.map((k) => `${k}/1`),
      ...kinds.map((k) => `${k}/3`),
    ]);
    for (const r of report.results) {
      for (const m of ["dice", "iouPerImage", "ajiBinaryAuthors", "ajiInstanceChallenge"]) {
        const v = r.scores[m].mean;
        assert.ok(v >= 0 && v <= 1, `${r.kind}/${r.labels} ${m} = ${v}`);
      }
      // The authors' AJI is the binary-mask IoU (see metrics.ts), whatever the predictions.
      assert.ok(Math.abs(r.scores.ajiBinaryAuthors.mean - r.scores.iouPerImage.mean) < 1e-12);
      if (r.kind === "supervised") assert.equal(r.supervised[0].steps, 2);
      else assert.equal(r.heads.reports[0].epochs, 1);
    }
    assert.deepEqual(report.featureChannels.rgb, 3);
    // The CPU UNet's decoder blocks 3, 4 and 5 have 64 channels each: MDM reads 3 of them at one
    // timestep, DDPM its own 2 at three timesteps.
    assert.equal(report.featureChannels.mdm, 3 * 64);
    assert.equal(report.featureChannels.ddpm, 3 * 2 * 64);
    const phases = report.timings.map((t: { phase: string }) => t.phase);
    for (const p of ["pre-train MDM", "pre-train DDPM", "evaluate MDM heads", "score predictions"]) {
      assert.ok(phases.includes(p), `no timing for ${p}: ${phases}`);
    }

    const md = await Deno.readTextFile(`${out}/report.md`);
    for (
      const text of [
        "## 3 labelled images (the paper's 10%)",
        "| MDM features + pixel MLP | 1 heads |",
        "| supervised UNet from scratch | 1 seeds |",
        "79.71 ± 0.75 / 66.43 ± 1.02", // the paper's MDM at 3 labels
        "An **epoch** is",
        "## Timings",
        "**total (wall clock)**",
        "## Overlays",
        "decoder blocks 3, 4, 5 (192 numbers per pixel) of the image as it is (t = 0)",
        "features of decoder blocks 3, 4 at noise levels t = 50, 150, 250 concatenated (384 numbers per pixel)",
      ]
    ) assert.ok(md.includes(text), `report.md lacks ${JSON.stringify(text)}`);
    assert.match(md, /- MDM (is|is not) ahead of DDPM: Dice/);

    // One overlay: 2 rows (label counts) of image | truth | 5 predictions, 160² panels with 4 px gaps.
    const [overlay] = report.overlays;
    const png = await readImage(`${out}/${overlay.file}`);
    assert.equal(png.width, 7 * 160 + 8 * 4);
    assert.equal(png.height, 2 * 160 + 3 * 4);
  },
});

Deno.test({
  name: "bench/monuseg.ts: bad command lines fail with one line naming the input",
  ignore: !present,
  fn: async () => {
    const missing = await runScript("bench/monuseg.ts", ["--data", `${TMP}/nowhere`]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--data .*nowhere: no such folder/);
    const only = await runScript("bench/monuseg.ts", ["--data", DATA, "--only", "mdm,vit"]);
    assert.equal(only.code, 2);
    assert.match(only.stderr, /--only: unknown predictor "vit"/);
    const scale = await runScript("bench/monuseg.ts", ["--scale", "huge"]);
    assert.equal(scale.code, 2);
    assert.match(scale.stderr, /--scale must be one of quick, cpu, gpu, paper/);
  },
});
