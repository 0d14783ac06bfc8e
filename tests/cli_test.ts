// The command lines of train.ts and segment.ts under bad input, as a table: out-of-range numbers,
// non-numbers, unknown flags and choices, missing or unreadable files, damaged checkpoints and
// states, wrong folder layouts, a locked output folder. Each case must end with exit code 1 (data)
// or 2 (usage) and one line naming the input, never a stack trace. The cases run in this process
// through the programs' own error handling (runMain, what runCli runs), so that a hundred cases
// take seconds; a few run as real processes to check the wiring, and --verbose.
import assert from "node:assert/strict";
import { main as trainMain } from "../train.ts";
import { main as segmentMain } from "../segment.ts";
import { describeError, runMain, UsageError } from "../src/cli/args.ts";
import { encodePng, writePng } from "../src/data/image.ts";
import { ensureSyntheticDataset } from "../src/data/synthetic.ts";
import { writeSums } from "../src/io/checksum.ts";
import { LimitError } from "../src/io/limits.ts";
import { FolderLock } from "../src/io/lock.ts";
import { probeTorsoDtype } from "../src/cli/probe.ts";
import { ImageError } from "../src/data/image.ts";
import { runScript, tempDir } from "./helpers/scripts.ts";

const TMP = tempDir("mdm_cli_test_");
const CACHE = `${TMP}/cache`;
await ensureSyntheticDataset(CACHE, {});

const TINY = [
  ...["--crop", "32", "--model-channels", "32", "--channel-mult", "1,2", "--num-res-blocks", "1"],
  ...["--attention-resolutions", "16", "--num-head-channels", "32", "--batch", "2", "--threads", "1"],
  ...["--cache", CACHE, "--picture-every", "0"],
];

interface Outcome {
  code: number;
  /** What runMain printed for the error. */
  lines: string[];
  /** Everything else the program printed on the console. */
  console: string;
}

/** Runs a program's main in this process, as runCli would, capturing what it prints. */
async function run(program: "train.ts" | "segment.ts", argv: string[]): Promise<Outcome> {
  const lines: string[] = [];
  const seen: string[] = [];
  const saved = { error: console.error, log: console.log, warn: console.warn };
  const capture = (...xs: unknown[]) => seen.push(xs.map(String).join(" "));
  console.error = console.log = console.warn = capture;
  try {
    const code = await runMain(program, program === "train.ts" ? trainMain : segmentMain, argv, (l) => lines.push(l));
    return { code, lines, console: seen.join("\n") };
  } finally {
    Object.assign(console, saved);
  }
}

type Case = [what: string, argv: string[], code: 1 | 2, message: RegExp];

/** Runs `cases` of `program` as steps: exit code, one line naming the input, no stack trace. */
async function table(t: Deno.TestContext, program: "train.ts" | "segment.ts", base: string[], cases: Case[]) {
  for (const [what, argv, code, message] of cases) {
    await t.step(`${what}: exit ${code}`, async () => {
      const r = await run(program, [...base, ...argv]);
      const shown = `${program} ${argv.join(" ")} printed:\n${r.lines.join("\n")}\n${r.console}`;
      assert.equal(r.code, code, shown);
      assert.equal(r.lines.length, 1, `one line expected; ${shown}`);
      assert.ok(r.lines[0].startsWith(`${program}: `), shown);
      assert.ok(!r.lines[0].includes("\n"), shown);
      assert.match(r.lines[0], message, shown);
      assert.doesNotMatch(r.lines[0], /unexpected error/, shown);
      assert.doesNotMatch(`${r.lines.join("\n")}\n${r.console}`, /^\s+at /m, `a stack trace; ${shown}`);
    });
  }
}

// ---------------------------------------------------------------- fixtures

/** A pre-training of 2 steps with a checkpoint after each: the base of the damaged checkpoints and segment.ts's model. */
const PRE = `${TMP}/pre`;
{
  const r = await run("train.ts", [...TINY, "--steps", "2", "--checkpoint-every", "1", "--out", PRE]);
  assert.equal(r.code, 0, r.lines.join("\n") + r.console);
}
const STEP2 = `${PRE}/checkpoints/step-0000002`;

let copies = 0;
/** A copy of the step-2 checkpoint, as `<dir>/checkpoints/step-0000002`, edited by `edit`. */
function damaged(edit: (ckpt: string) => void): string {
  const out = `${TMP}/damaged-${copies++}`;
  const ckpt = `${out}/checkpoints/step-0000002`;
  Deno.mkdirSync(ckpt, { recursive: true });
  for (const e of Deno.readDirSync(STEP2)) Deno.copyFileSync(`${STEP2}/${e.name}`, `${ckpt}/${e.name}`);
  edit(ckpt);
  return ckpt;
}

// Parsed JSON, edited freely.
// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

/** Edits state.json and rewrites SHA256SUMS to match, so that only the state's validation can catch it. */
function editState(f: (s: Json) => void, resum = true): (ckpt: string) => void {
  return (ckpt) => {
    const s = JSON.parse(Deno.readTextFileSync(`${ckpt}/state.json`));
    f(s);
    Deno.writeTextFileSync(`${ckpt}/state.json`, JSON.stringify(s));
    if (resum) {
      Deno.removeSync(`${ckpt}/SHA256SUMS`);
      writeSums(ckpt, ["model.safetensors", "ema.safetensors", "optimizer.bin", "state.json"]);
    }
  };
}

function flipByte(file: string, at: number): void {
  const b = Deno.readFileSync(file);
  b[Math.min(at, b.length - 1)] ^= 0x40;
  Deno.writeFileSync(file, b);
}

function truncate(file: string, keep: number): void {
  Deno.writeFileSync(file, Deno.readFileSync(file).subarray(0, keep));
}

const png = (w: number, h: number, seed = 1) =>
  encodePng({
    width: w,
    height: h,
    channels: 3,
    data: Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * seed * 37) % 251),
  });

const dir = (name: string) => {
  const d = `${TMP}/${name}`;
  Deno.mkdirSync(d, { recursive: true });
  return d;
};
const EMPTY = dir("empty");
const A_FILE = `${TMP}/a-file.txt`;
Deno.writeTextFileSync(A_FILE, "not a folder");
const CORRUPT = dir("corrupt");
Deno.writeFileSync(`${CORRUPT}/bad.png`, Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10, 0, 0, 0, 1, 7, 7));
const TRUNCATED = dir("truncated");
Deno.writeFileSync(`${TRUNCATED}/cut.png`, png(40, 40).subarray(0, 60));
const ONLY_MASKS = dir("only-masks/train/masks");
Deno.writeFileSync(`${ONLY_MASKS}/a.png`, png(40, 40));
const BIG = dir("big");
Deno.writeFileSync(`${BIG}/big.png`, png(40, 40));
const UNKNOWN_FORMAT = dir("unknown-format");
Deno.writeTextFileSync(`${UNKNOWN_FORMAT}/text.png`, "hello");
const DANGLING = dir("dangling");
Deno.symlinkSync(`${TMP}/nowhere.png`, `${DANGLING}/gone.png`);
dir("dir-as-image/x.png");

// ---------------------------------------------------------------- train.ts

Deno.test("train.ts: bad command lines end in exit 1 or 2 and one line naming the input", async (t) => {
  const out = ["--out", `${TMP}/train-out`];
  const lockedOut = dir("locked");
  const lock = FolderLock.acquire(lockedOut, "another run");
  const allDamaged = damaged(editState((s) => s.step = -5));
  const cases: Case[] = [
    // Out-of-range numbers.
    ["--threads 99999999999", ["--threads", "99999999999"], 2, /--threads must be between 1 and 1024/],
    ["--threads 0", ["--threads", "0"], 2, /--threads must be between 1 and 1024, got 0/],
    ["--seed 1e20", ["--seed", "1e20"], 2, /--seed expects an integer, got "1e20"/],
    ["--seed -1", ["--seed", "-1"], 2, /--seed must be between 0 and 4294967295, got -1/],
    ["--seed 2^32", ["--seed", "4294967296"], 2, /--seed must be between/],
    ["--steps 1e300", ["--steps", "1e300"], 2, /--steps expects an integer/],
    ["--steps 0", ["--steps", "0"], 2, /--steps must be between 1 and/],
    ["--steps 2e9", ["--steps", "2000000000"], 2, /--steps must be between 1 and 1000000000/],
    [
      "--picture-timesteps 5000",
      ["--picture-timesteps", "5000"],
      2,
      /--picture-timesteps: 5000 is not below --diffusion-steps \(1000\)/,
    ],
    [
      "--picture-timesteps above a small T",
      ["--diffusion-steps", "100", "--picture-timesteps", "50,100"],
      2,
      /--picture-timesteps: 100 is not below --diffusion-steps \(100\)/,
    ],
    ["--fixed-t 1000", ["--fixed-t", "1000"], 2, /--fixed-t must be below --diffusion-steps \(1000\), got 1000/],
    ["--diffusion-steps 1e9", ["--diffusion-steps", "1000000000"], 2, /--diffusion-steps must be between 1 and 100000/],
    ["--crop 4", ["--crop", "4"], 2, /--crop must be between 8 and 8192, got 4/],
    ["--crop 34 (patch 8)", ["--crop", "34"], 2, /--patch-size 8 must divide the crop 34/],
    [
      "--crop 40 (attention at 16)",
      ["--crop", "40", "--patch-size", "4"],
      2,
      /attention resolution 16 does not divide imageSize 40/,
    ],
    ["--model-channels 33", ["--model-channels", "33"], 2, /UNet flags: .*33 is not a multiple of 32/],
    ["--model-channels 1e9", ["--model-channels", "1000000000"], 2, /--model-channels must be between 1 and 4096/],
    ["--num-head-channels 0", ["--num-head-channels", "0"], 2, /--num-head-channels must be -1 or positive, got 0/],
    [
      "--num-head-channels 48",
      ["--num-head-channels", "48"],
      2,
      /--num-head-channels: 48 does not divide the 64 channels/,
    ],
    [
      "--num-heads 3",
      ["--num-head-channels", "-1", "--num-heads", "3"],
      2,
      /--num-heads: 3 heads do not divide the 64 channels/,
    ],
    ["--ema-rate 2", ["--ema-rate", "2"], 2, /--ema-rate must be between 0 and 1, got 2/],
    ["--dropout 1", ["--dropout", "1"], 2, /--dropout must be between 0 and 0\.99, got 1/],
    ["--lr -1", ["--lr", "-1"], 2, /--lr must be at least 0, got -1/],
    [
      "--batch 6 --micro-batch 4",
      ["--batch", "6", "--micro-batch", "4"],
      2,
      /--batch 6 must be a multiple of --micro-batch 4/,
    ],
    ["--patch-size 7", ["--patch-size", "7"], 2, /--patch-size 7 must divide the crop 32/],
    ["--keep-checkpoints 0", ["--keep-checkpoints", "0"], 2, /--keep-checkpoints must be between 1 and/],
    ["--max-pixels 0", ["--max-pixels", "0"], 2, /--max-pixels must be between 1 and/],
    ["--channel-mult 1,100", ["--channel-mult", "1,100"], 2, /--channel-mult must be between 1 and 64, got 100/],
    // Non-numbers.
    ["--steps abc", ["--steps", "abc"], 2, /--steps expects an integer, got "abc"/],
    ["--steps 1.5", ["--steps", "1.5"], 2, /--steps expects an integer, got "1\.5"/],
    ["--steps ''", ["--steps", ""], 2, /--steps expects an integer, got ""/],
    ["--lr NaN", ["--lr", "NaN"], 2, /--lr expects a number, got "NaN"/],
    ["--lr Infinity", ["--lr", "Infinity"], 2, /--lr expects a number, got "Infinity"/],
    ["--channel-mult 1,x", ["--channel-mult", "1,x"], 2, /--channel-mult expects an integer, got "x"/],
    ["--channel-mult 1,,2", ["--channel-mult", "1,,2"], 2, /--channel-mult expects an integer, got ""/],
    ["--pad-small maybe", ["--pad-small=maybe"], 2, /--pad-small expects true or false, got "maybe"/],
    ["--steps followed by a flag", ["--steps", "--lr", "1"], 2, /--steps needs a value/],
    ["--steps without a value", ["--steps"], 2, /--steps needs a value/],
    ["--limits maxBytes=x", ["--limits", "maxBytes=x"], 2, /--limits maxBytes expects a positive integer, got "x"/],
    // Unknown flags and choices.
    ["an unknown flag", ["--bogus", "1"], 2, /unknown flag --bogus/],
    ["a positional argument", ["data/"], 2, /unexpected argument "data\/"; flags start with --/],
    ["--method evil", ["--method", "evil"], 2, /--method must be one of mdm, ddpm; got "evil"/],
    ["--loss ssim2", ["--loss", "ssim2"], 2, /--loss must be one of ssim, mse, l1; got "ssim2"/],
    ["--device tpu", ["--device", "tpu"], 2, /--device must be cpu, cuda or cuda:N; got "tpu"/],
    [
      "--device cuda:99",
      ["--device", "cuda:99"],
      2,
      /--device cuda:99: (CUDA is not available|there are \d+ CUDA devices)/,
    ],
    ["--learn-sigma (cannot pre-train)", ["--learn-sigma"], 2, /unknown flag --learn-sigma/],
    ["--limits with an unknown limit", ["--limits", "maxFun=3"], 2, /--limits: unknown limit "maxFun"/],
    ["--out ''", ["--out="], 2, /--out needs a value, got an empty string/],
    // Missing and unreadable files, wrong layouts.
    ["--data that does not exist", ["--data", `${TMP}/nowhere`], 2, /--data \S+nowhere: no such folder/],
    ["--data that is a file", ["--data", A_FILE], 2, /--data \S+a-file\.txt: not a folder/],
    ["--data without images", ["--data", EMPTY], 2, /--data \S+empty: no \.png\/\.jpg\/.* images found/],
    [
      "--data with only a masks folder",
      ["--data", `${TMP}/only-masks`],
      2,
      /no .* images found; skipped label folders train\/masks/,
    ],
    ["--data with a corrupt PNG", ["--data", CORRUPT], 1, /corrupt\/bad\.png: PNG/],
    ["--data with a truncated PNG", ["--data", TRUNCATED], 1, /truncated\/cut\.png: /],
    ["--data with a text file named .png", ["--data", UNKNOWN_FORMAT], 1, /text\.png: unknown image format/],
    ["--data with a folder named x.png", ["--data", `${TMP}/dir-as-image`], 2, /no .* images found/],
    ["--data with a link to nothing", ["--data", DANGLING], 2, /dangling: no .* images found/],
    [
      "--data with an image over --max-pixels",
      ["--data", BIG, "--max-pixels", "1000"],
      1,
      /big\.png: PNG: an image of 40x40 pixels exceeds the limit maxPixels = 1000 \(raise it with --max-pixels <pixels>\)$/,
    ],
    [
      "--data with an image smaller than the crop",
      ["--data", BIG, "--crop", "64", "--patch-size", "8"],
      2,
      /big\.png: image is 40x40, smaller than the --crop 64/,
    ],
    ["--out that is a file", ["--out", A_FILE], 2, /--out \S+a-file\.txt: cannot create the folder/],
    [
      "--out locked by another run",
      ["--out", lockedOut],
      1,
      new RegExp(`locked/\\.lock: the folder is in use by another run \\(pid ${Deno.pid} on .*, started \\d{4}-`),
    ],
    ["--cache that is a file", ["--cache", A_FILE], 1, /a-file\.txt/],
    [
      "--resume with nothing to resume",
      ["--resume", "--out", `${TMP}/fresh`],
      2,
      /--resume: no checkpoint in \S+fresh\/checkpoints/,
    ],
    [
      "--resume-from a missing folder",
      ["--resume-from", `${TMP}/nowhere`],
      2,
      /--resume-from \S+nowhere: no such checkpoint folder/,
    ],
    [
      "--resume-from a folder without state.json",
      ["--resume-from", EMPTY],
      1,
      /empty: not a checkpoint folder \(no state\.json\)/,
    ],
    [
      "--resume-from with --steps below its step",
      ["--resume-from", STEP2, "--steps", "1"],
      2,
      /--steps 1: the checkpoint \S+step-0000002 is already at step 2/,
    ],
    // Damaged checkpoints and states (the issue's inputs first).
    [
      "state.json step -5",
      ["--resume-from", damaged(editState((s) => s.step = -5))],
      1,
      /step-0000002\/state\.json: step must be an integer from 0 to 1000000000, got -5/,
    ],
    [
      "state.json step 1e300",
      ["--resume-from", damaged(editState((s) => s.step = 1e300))],
      1,
      /state\.json: step must be an integer from 0 to 1000000000, got 1e\+300/,
    ],
    [
      "state.json method evil",
      ["--resume-from", damaged(editState((s) => s.options.method = "evil"))],
      1,
      /state\.json: options\.method must be one of mdm, ddpm; got "evil"/,
    ],
    [
      "state.json without options.lr",
      ["--resume-from", damaged(editState((s) => delete s.options.lr))],
      1,
      /state\.json: options\.lr is missing/,
    ],
    [
      "state.json without options",
      ["--resume-from", damaged(editState((s) => delete s.options))],
      1,
      /state\.json: options is missing/,
    ],
    [
      "state.json with options.unet.modelChannels 33",
      ["--resume-from", damaged(editState((s) => s.options.unet.modelChannels = 33))],
      1,
      /state\.json: options\.unet does not describe a UNet/,
    ],
    [
      "state.json with an unknown field",
      ["--resume-from", damaged(editState((s) => s.options.unet.wings = 2))],
      1,
      /state\.json: options\.unet\.wings is not a known field/,
    ],
    [
      "state.json version 99",
      ["--resume-from", damaged(editState((s) => s.version = 99))],
      1,
      /state\.json: version must be an integer from 1 to 2, got 99/,
    ],
    [
      "state.json rng not base64",
      ["--resume-from", damaged(editState((s) => s.rng.mask = "%%%%"))],
      1,
      /state\.json: rng\.mask is not base64/,
    ],
    [
      "state.json rng of the wrong length",
      ["--resume-from", damaged(editState((s) => s.rng.noise = "AAAA"))],
      1,
      /state\.json \(rng\): /,
    ],
    [
      "state.json data order for other images",
      ["--resume-from", damaged(editState((s) => s.data.order = [0, 1, 2]))],
      1,
      /state\.json: its data order does not fit the 24 images/,
    ],
    [
      "state.json step not the folder's",
      ["--resume-from", damaged(editState((s) => s.step = 1))],
      1,
      /state\.json: step is 1 but the folder is named for step 2/,
    ],
    [
      "state.json not JSON",
      ["--resume-from", damaged((c) => Deno.writeTextFileSync(`${c}/state.json`, "{ nope"))],
      1,
      /step-0000002\/(SHA256SUMS|state\.json)/,
    ],
    [
      "state.json edited without new checksums",
      ["--resume-from", damaged(editState((s) => s.seconds = 1, false))],
      1,
      /step-0000002\/state\.json: damaged \(its SHA-256 differs from the one in SHA256SUMS\)$/,
    ],
    [
      "optimizer.bin with a flipped byte",
      ["--resume-from", damaged((c) => flipByte(`${c}/optimizer.bin`, 5000))],
      1,
      /step-0000002\/optimizer\.bin: damaged \(its SHA-256 differs/,
    ],
    [
      "model.safetensors truncated",
      ["--resume-from", damaged((c) => truncate(`${c}/model.safetensors`, 1000))],
      1,
      /step-0000002\/model\.safetensors: damaged \(its SHA-256 differs/,
    ],
    [
      "ema.safetensors missing",
      ["--resume-from", damaged((c) => Deno.removeSync(`${c}/ema.safetensors`))],
      1,
      /step-0000002\/ema\.safetensors: missing \(listed in SHA256SUMS\)/,
    ],
    [
      "SHA256SUMS missing",
      ["--resume-from", damaged((c) => Deno.removeSync(`${c}/SHA256SUMS`))],
      1,
      /step-0000002\/SHA256SUMS: missing \(a version 2 checkpoint must have it\)/,
    ],
    [
      "SHA256SUMS garbled",
      ["--resume-from", damaged((c) => Deno.writeTextFileSync(`${c}/SHA256SUMS`, "xyz\n"))],
      1,
      /step-0000002\/SHA256SUMS: damaged \(line "xyz"\)/,
    ],
    [
      "--resume with every checkpoint damaged",
      ["--resume", "--out", allDamaged.replace(/\/checkpoints\/.*/, "")],
      1,
      /--resume: no intact checkpoint in \S+ \(1 damaged, set aside\)/,
    ],
  ];
  try {
    await table(t, "train.ts", [...TINY, "--steps", "3", ...out], cases);
  } finally {
    lock.release();
  }
});

Deno.test("train.ts: an image refused at the default limit is taken once --max-pixels allows it", async () => {
  const r = await run("train.ts", [
    ...TINY,
    "--data",
    BIG,
    "--max-pixels",
    "1600",
    "--steps",
    "1",
    "--out",
    `${TMP}/big-out`,
  ]);
  assert.equal(r.code, 0, r.lines.join("\n") + r.console);
  assert.match(r.console, /1 image in \S+big: 1 in \./);
});

// ---------------------------------------------------------------- segment.ts

function cpuFloat16Refused(): boolean {
  try {
    probeTorsoDtype("float16", "cpu", { backward: false });
    return false;
  } catch (e) {
    if (e instanceof UsageError) return true;
    throw e;
  }
}

Deno.test("segment.ts: bad command lines end in exit 1 or 2 and one line naming the input", async (t) => {
  const checkpoint = `${PRE}/model.safetensors`;
  const config = (edit: (c: Json) => void) => {
    const c = JSON.parse(Deno.readTextFileSync(`${PRE}/config.json`));
    edit(c);
    const path = `${TMP}/config-${copies++}.json`;
    Deno.writeTextFileSync(path, JSON.stringify(c));
    return path;
  };
  const garbage = `${TMP}/garbage.safetensors`;
  Deno.writeFileSync(garbage, new Uint8Array(100).fill(7));
  // Folder datasets: one with masks of a single class, one without test/, one with a mask missing.
  const oneClass = dir("one-class");
  const folderSplit = async (root: string, split: string, masks: number[]) => {
    dir(`${root.slice(TMP.length + 1)}/${split}/images`);
    dir(`${root.slice(TMP.length + 1)}/${split}/masks`);
    for (const [i, v] of masks.entries()) {
      Deno.writeFileSync(`${root}/${split}/images/im${i}.png`, png(40, 40, i + 2));
      await writePng(`${root}/${split}/masks/im${i}.png`, {
        width: 40,
        height: 40,
        channels: 1,
        data: new Uint8Array(1600).fill(v),
      });
    }
  };
  await folderSplit(oneClass, "train", [0, 0]);
  await folderSplit(oneClass, "test", [0]);
  const noTest = dir("no-test");
  await folderSplit(noTest, "train", [0, 1]);
  const noMask = dir("no-mask");
  await folderSplit(noMask, "train", [0, 1]);
  await folderSplit(noMask, "test", [1]);
  Deno.removeSync(`${noMask}/test/masks/im0.png`);
  const lockedOut = dir("locked-segment");
  const lock = FolderLock.acquire(lockedOut, "another run");
  const cases: Case[] = [
    // Out-of-range numbers.
    [
      "--timesteps 5000",
      ["--timesteps", "5000"],
      2,
      /--timesteps: 5000 is not below the pre-training's 1000 diffusion steps/,
    ],
    ["--timesteps 1000", ["--timesteps", "50,1000"], 2, /--timesteps: 1000 is not below/],
    ["--timesteps 1e6", ["--timesteps", "1000000"], 2, /--timesteps must be between 0 and 99999/],
    ["--blocks 99", ["--blocks", "1,99"], 2, /--blocks: the model has decoder blocks 0\.\.3, not 99/],
    ["--heads 0", ["--heads", "0"], 2, /--heads must be between 1 and 1000, got 0/],
    ["--heads 1e9", ["--heads", "1000000000"], 2, /--heads must be between 1 and 1000/],
    ["--labels 1e20", ["--labels", "1e20"], 2, /--labels expects an integer/],
    ["--labels 17", ["--labels", "17"], 2, /--labels 17: the training split has 16 images/],
    ["--overlap 1", ["--overlap", "1"], 2, /--overlap must be between 0 and 0\.95, got 1/],
    ["--crop 7", ["--crop", "7"], 2, /--crop must be between 8 and 8192, got 7/],
    ["--crop 512 (larger than the images)", ["--crop", "512"], 2, /--crop 512: the labelled image syn_0000 is 256x256/],
    ["--crop 33 (odd for this UNet)", ["--crop", "33"], 2, /--crop 33: must be a multiple of 2 for this UNet/],
    ["--threads 99999999999", ["--threads", "99999999999"], 2, /--threads must be between 1 and 1024/],
    ["--seed 1e20", ["--seed", "1e20"], 2, /--seed expects an integer, got "1e20"/],
    [
      "--classes 3 for monuseg",
      ["--dataset", "monuseg", "--data", EMPTY, "--classes", "3"],
      2,
      /--classes 3: the monuseg dataset has 2 classes/,
    ],
    // Non-numbers, unknown flags and choices.
    ["--batch x", ["--batch", "x"], 2, /--batch expects an integer, got "x"/],
    ["--lr abc", ["--lr", "abc"], 2, /--lr expects a number, got "abc"/],
    ["an unknown flag", ["--bogus"], 2, /unknown flag --bogus/],
    [
      "--dataset imagenet",
      ["--dataset", "imagenet"],
      2,
      /--dataset must be one of synthetic, monuseg, glas, folder, ddpm; got "imagenet"/,
    ],
    ["--protocol other", ["--protocol", "other"], 2, /--protocol must be one of medical, faces/],
    ["--device cuda:99", ["--device", "cuda:99"], 2, /--device cuda:99: /],
    [
      "--limits maxDepth=abc",
      ["--limits", "maxDepth=abc"],
      2,
      /--limits maxDepth expects a positive integer, got "abc"/,
    ],
    // The faces protocol on a UNet without ddpm-segmentation's blocks (4 decoder blocks here).
    [
      "--protocol faces on a small UNet",
      ["--protocol", "faces"],
      2,
      /--protocol faces: the model has decoder blocks 0\.\.3, none of the default 5,6,7,8,9,10,11,12; give --blocks/,
    ],
    // Missing and unreadable files.
    [
      "a missing checkpoint",
      ["--checkpoint", `${TMP}/missing.safetensors`],
      2,
      /--checkpoint \S+missing\.safetensors: not found/,
    ],
    ["a folder as checkpoint", ["--checkpoint", EMPTY], 2, /--checkpoint \S+empty: not found, or not a file/],
    [
      "a checkpoint without config.json",
      ["--checkpoint", garbage],
      2,
      /cannot read the pre-training config \S+config\.json .*give --config/,
    ],
    ["a garbage checkpoint", ["--checkpoint", garbage, "--config", `${PRE}/config.json`], 1, /garbage\.safetensors: /],
    [
      "a missing --config",
      ["--config", `${TMP}/nowhere.json`],
      2,
      /cannot read the pre-training config \S+nowhere\.json/,
    ],
    ["--config not JSON", ["--config", A_FILE], 1, /a-file\.txt: not JSON/],
    [
      "--config with method evil",
      ["--config", config((c) => c.options.method = "evil")],
      1,
      /config-\d+\.json: options\.method must be one of mdm, ddpm; got "evil"/,
    ],
    [
      "--config without options",
      ["--config", config((c) => delete c.options)],
      1,
      /config-\d+\.json: options is missing/,
    ],
    [
      "--config without options.patchSize",
      ["--config", config((c) => delete c.options.patchSize)],
      1,
      /options\.patchSize is missing/,
    ],
    [
      "--config with modelChannels 33",
      ["--config", config((c) => c.options.unet.modelChannels = 33)],
      1,
      /options\.unet does not describe a UNet/,
    ],
    // Where this libtorch cannot run a float16 torso on a CPU (1.x), the config's setting is refused
    // by name; where it can (2.x), there is nothing to refuse.
    ...(cpuFloat16Refused()
      ? [[
        "--config with a float16 torso on a CPU",
        ["--config", config((c) => c.options.unet.torsoDtype = "float16")],
        2,
        /config-\d+\.json: options\.unet\.torsoDtype float16: this libtorch cannot run it on cpu/,
      ] as Case]
      : []),
    [
      "--config for another model",
      ["--config", config((c) => c.options.unet.modelChannels = 64)],
      1,
      /model\.safetensors: \d+ of the model's weights \(from \S+config-\d+\.json\) are missing or of another shape, e\.g\. \S+ is \[\d+(, \d+)*\] in the file/,
    ],
    ["--out that is a file", ["--out", A_FILE], 2, /--out \S+a-file\.txt: cannot create the folder/],
    [
      "--out locked by another run",
      ["--out", lockedOut],
      1,
      /locked-segment\/\.lock: the folder is in use by another run \(pid \d+/,
    ],
    // Wrong folder layouts.
    ["--dataset monuseg without --data", ["--dataset", "monuseg"], 2, /--dataset monuseg needs --data <folder>/],
    [
      "--dataset monuseg, --data missing",
      ["--dataset", "monuseg", "--data", `${TMP}/nowhere`],
      2,
      /--data \S+nowhere: no such folder/,
    ],
    [
      "--dataset monuseg, --data a file",
      ["--dataset", "monuseg", "--data", A_FILE],
      2,
      /--data \S+a-file\.txt: not a folder/,
    ],
    [
      "--dataset monuseg, an empty folder",
      ["--dataset", "monuseg", "--data", EMPTY],
      1,
      /empty\/train\/images: folder not found/,
    ],
    ["--dataset glas, an empty folder", ["--dataset", "glas", "--data", EMPTY], 1, /empty: no GlaS images/],
    [
      "--dataset folder, an empty folder",
      ["--dataset", "folder", "--data", EMPTY],
      1,
      /empty\/train\/images: folder not found/,
    ],
    [
      "--dataset folder, masks of one class",
      ["--dataset", "folder", "--data", oneClass],
      1,
      /one-class\/train\/masks\/im0\.png: this and the other 1 training masks hold no class but 0/,
    ],
    [
      "--dataset folder without test/",
      ["--dataset", "folder", "--data", noTest],
      1,
      /no-test\/test\/images: folder not found/,
    ],
    [
      "--dataset folder with a mask missing",
      ["--dataset", "folder", "--data", noMask],
      1,
      /no-mask\/test\/masks\/im0\.png: missing mask for/,
    ],
    [
      "--dataset folder, images over --max-pixels",
      ["--dataset", "folder", "--data", noMask, "--max-pixels", "100"],
      1,
      /im0\.png: .*raise it with --max-pixels/,
    ],
    [
      "--dataset ddpm with an unknown name",
      ["--dataset", "ddpm", "--data", EMPTY, "--blocks", "1"],
      2,
      /--dataset ddpm: give --classes for empty/,
    ],
  ];
  try {
    const base = ["--checkpoint", checkpoint, "--cache", CACHE, "--threads", "1", "--out", `${TMP}/segment-out`];
    await table(t, "segment.ts", base, cases);
  } finally {
    lock.release();
  }
});

// ---------------------------------------------------------------- the error handling itself

Deno.test("runMain: expected errors are one line; unexpected ones say so, with the stack only under --verbose", async () => {
  const lines: string[] = [];
  const fail = (e: unknown) => () => Promise.reject(e);
  assert.equal(await runMain("p", fail(new UsageError("--x bad")), [], (l) => lines.push(l)), 2);
  assert.deepEqual(lines.splice(0), ["p: --x bad"]);
  assert.equal(await runMain("p", fail(new ImageError("a.png", "corrupt")), [], (l) => lines.push(l)), 1);
  assert.deepEqual(lines.splice(0), ["p: a.png: corrupt"]);
  assert.equal(await runMain("p", fail(new Deno.errors.NotFound("open '/x'")), [], (l) => lines.push(l)), 1);
  assert.deepEqual(lines.splice(0), ["p: open '/x'"]);
  // node:fs's errors carry a code and name the path.
  const nodeError = Object.assign(new Error("ENOTDIR: not a directory, lstat '/x/y'"), { code: "ENOTDIR" });
  assert.equal(await runMain("p", fail(nodeError), [], (l) => lines.push(l)), 1);
  assert.deepEqual(lines.splice(0), ["p: ENOTDIR: not a directory, lstat '/x/y'"]);
  const bug = new TypeError("x is undefined");
  assert.equal(await runMain("p", fail(bug), [], (l) => lines.push(l)), 3);
  assert.deepEqual(lines.splice(0), [
    "p: unexpected error: TypeError: x is undefined (rerun with --verbose for the stack trace)",
  ]);
  assert.equal(await runMain("p", fail(bug), ["--verbose"], (l) => lines.push(l)), 3);
  assert.equal(lines[0], "p: unexpected error: TypeError: x is undefined");
  assert.equal(lines[1], bug.stack);
  // A reader's limit: the hint names the flag that raises it, not the library option.
  const limit = new ImageError("big.png", "PNG: x", {
    cause: new LimitError("maxPixels", 10, 5, "an image of 10 pixels"),
  });
  const limitMessage = new ImageError("big.png", `PNG: ${(limit.cause as Error).message}`, { cause: limit.cause });
  assert.match(
    describeError(limitMessage).message,
    /big\.png: PNG: an image of 10 pixels exceeds the limit maxPixels = 5 \(raise it with --max-pixels <pixels>\)$/,
  );
  const depth = new ImageError("a.xml", "deep", { cause: new LimitError("maxDepth", 10, 5, "nesting") });
  assert.match(describeError(depth).message, /a\.xml: deep \(raise it with --limits maxDepth=<value>\)$/);
  // Multi-line messages become one line.
  assert.equal(describeError(new UsageError("a\n  b")).message, "a; b");
});

Deno.test("the programs as processes: exit codes, one line on stderr, the stack only with --verbose", async () => {
  const r1 = await runScript("train.ts", ["--threads", "99999999999"]);
  assert.equal(r1.code, 2);
  assert.equal(r1.stderr.trim(), "train.ts: --threads must be between 1 and 1024, got 99999999999");
  const r2 = await runScript("segment.ts", [
    "--checkpoint",
    `${PRE}/model.safetensors`,
    "--timesteps",
    "5000",
    "--threads",
    "1",
    "--cache",
    CACHE,
    "--out",
    `${TMP}/seg-process`,
  ]);
  assert.equal(r2.code, 2, r2.stderr);
  assert.equal(r2.stderr.trim(), "segment.ts: --timesteps: 5000 is not below the pre-training's 1000 diffusion steps");
  const r3 = await runScript("train.ts", ["--steps", "0", "--verbose"]);
  assert.equal(r3.code, 2);
  const [first, ...rest] = r3.stderr.trim().split("\n");
  assert.equal(first, "train.ts: --steps must be between 1 and 1000000000, got 0");
  assert.match(rest.join("\n"), /^\s+at .*args\.ts/m, "--verbose prints the stack");
});
