// What protects a pre-training's output folder: checksums on every checkpoint file (300 damaged
// optimizer states, byte flips and truncations, are all refused), --resume falling back past a
// damaged newest checkpoint to the newest intact one (and still ending where an uninterrupted run
// ends, to the byte), temporary folders of killed saves cleaned up (never one a live process is
// writing), and the lock that keeps a second run out of a folder in use, named by its holder, but
// not after the holder was killed.
import assert from "node:assert/strict";
import { main as trainMain } from "../train.ts";
import { runMain } from "../src/cli/args.ts";
import { CheckpointError } from "../src/io/common.ts";
import { FolderLock, LockError } from "../src/io/lock.ts";
import { randn } from "../src/create.ts";
import { tidy } from "../src/scope.ts";
import { PRETRAIN_DEFAULTS, Pretrainer } from "../src/mdm/pretrain.ts";
import {
  cleanTemporaries,
  listCheckpoints,
  newestIntactCheckpoint,
  saveCheckpoint,
  verifyCheckpoint,
} from "../src/mdm/train_state.ts";
import { ensureSyntheticDataset } from "../src/data/synthetic.ts";
import { Rng } from "../src/data/rng.ts";
import { scriptCommand, tempDir } from "./helpers/scripts.ts";

const TMP = tempDir("mdm_resume_test_");
const CACHE = `${TMP}/cache`;
await ensureSyntheticDataset(CACHE, {});

const TINY = [
  ...["--crop", "32", "--model-channels", "32", "--channel-mult", "1,2", "--num-res-blocks", "1"],
  ...["--attention-resolutions", "16", "--num-head-channels", "32", "--batch", "2", "--threads", "1"],
  ...["--cache", CACHE, "--picture-every", "0"],
];

/** train.ts in this process; returns its exit code and everything it printed. */
async function train(argv: string[]): Promise<{ code: number; text: string }> {
  const seen: string[] = [];
  const saved = { error: console.error, log: console.log };
  console.error = console.log = (...xs: unknown[]) => seen.push(xs.map(String).join(" "));
  try {
    const code = await runMain("train.ts", trainMain, argv, (l) => seen.push(l));
    return { code, text: seen.join("\n") };
  } finally {
    Object.assign(console, saved);
  }
}

function sameBytes(a: string, b: string): boolean {
  const x = Deno.readFileSync(a), y = Deno.readFileSync(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

Deno.test("300 damaged optimizer states (byte flips, truncations) are all refused, naming optimizer.bin", () => {
  // A small model keeps the 300 checks fast (each hashes the whole checkpoint).
  const trainer = new Pretrainer({
    ...PRETRAIN_DEFAULTS,
    unet: { imageSize: 16, modelChannels: 32, channelMult: [1], numResBlocks: 1, attentionResolutions: [] },
    batch: 2,
    microBatch: 2,
    steps: 10,
  });
  tidy(() => trainer.trainStep(randn([2, 3, 16, 16]).clamp(-1, 1)));
  const root = `${TMP}/mutations`;
  const path = saveCheckpoint(root, trainer, { data: {}, seconds: 0 });
  assert.equal(verifyCheckpoint(path).verified, true);
  const file = `${path}/optimizer.bin`;
  const original = Deno.readFileSync(file);
  const rng = new Rng(11);
  try {
    for (let i = 0; i < 300; i++) {
      const bytes = original.slice();
      let what: string;
      if (i % 2 === 0) {
        const at = rng.int(bytes.length), bit = 1 << rng.int(8);
        bytes[at] ^= bit;
        what = `bit ${bit} of byte ${at} flipped`;
      } else {
        const keep = rng.int(bytes.length);
        what = `cut to ${keep} bytes`;
        Deno.writeFileSync(file, bytes.subarray(0, keep));
      }
      if (i % 2 === 0) Deno.writeFileSync(file, bytes);
      assert.throws(
        () => verifyCheckpoint(path),
        (e) =>
          e instanceof CheckpointError &&
          e.message === `${file}: damaged (its SHA-256 differs from the one in SHA256SUMS)`,
        what,
      );
    }
  } finally {
    Deno.writeFileSync(file, original);
  }
  assert.equal(verifyCheckpoint(path).state.step, 1, "the restored file passes again");
  for (const t of trainer.model.stateDict().values()) t.dispose();
});

Deno.test("--resume skips a damaged newest checkpoint with a warning and ends byte for byte where 6 steps end", async () => {
  const flags = [...TINY, "--checkpoint-every", "1", "--keep-checkpoints", "3"];
  const whole = `${TMP}/fallback-whole`, out = `${TMP}/fallback`;
  assert.equal((await train([...flags, "--steps", "6", "--out", whole])).code, 0);
  assert.equal((await train([...flags, "--steps", "4", "--out", out])).code, 0);
  // The newest checkpoint's optimizer state gets a flipped byte, the one before it is intact.
  const ckpt = `${out}/checkpoints`;
  const b = Deno.readFileSync(`${ckpt}/step-0000004/optimizer.bin`);
  b[b.length >> 1] ^= 1;
  Deno.writeFileSync(`${ckpt}/step-0000004/optimizer.bin`, b);
  const r = await train([...flags, "--steps", "6", "--resume", "--out", out]);
  assert.equal(r.code, 0, r.text);
  assert.match(
    r.text,
    /warning: skipping the damaged checkpoint \S+step-0000004 \(\S+step-0000004\/optimizer\.bin: damaged \(its SHA-256 differs from the one in SHA256SUMS\)\); moved it to \S+step-0000004\.damaged-[0-9a-f]{8}/,
  );
  assert.match(r.text, /resumed from \S+step-0000003 at step 3/);
  assert.ok(
    sameBytes(`${whole}/model.safetensors`, `${out}/model.safetensors`),
    "the same weights as 6 steps in one go",
  );
  assert.ok(sameBytes(`${whole}/ema.safetensors`, `${out}/ema.safetensors`), "the same EMA");
  assert.deepEqual(listCheckpoints(ckpt).map((c) => c.step), [4, 5, 6], "step 4 was written again");
  const aside = [...Deno.readDirSync(ckpt)].map((e) => e.name).filter((n) => n.includes(".damaged-"));
  assert.equal(aside.length, 1, "the damaged checkpoint is kept aside for inspection");
  assert.equal(newestIntactCheckpoint(ckpt).skipped.length, 0);
});

Deno.test("temporary folders of interrupted saves are removed, except those of a live process", async () => {
  const root = `${TMP}/temporaries/checkpoints`;
  Deno.mkdirSync(root, { recursive: true });
  // A pid that is not running, and a live one (a child that sleeps).
  let dead = 4_000_000;
  while (
    Deno.statSync("/proc").isDirectory && (() => {
      try {
        Deno.statSync(`/proc/${dead}`);
        return true;
      } catch {
        return false;
      }
    })()
  ) dead++;
  const sleeper = new Deno.Command("sleep", { args: ["30"], stdout: "null", stderr: "null" }).spawn();
  try {
    const names = [
      `step-0000005.tmp-${dead}-0a1b2c3d`, // a save killed midway
      `step-0000006.tmp-${sleeper.pid}-0a1b2c3d`, // a save under way in another process
      "step-0000007.tmp-0a1b2c3d", // the naming before pids
      "step-0000008", // a checkpoint
      "notes.tmp-1", // not a checkpoint's
    ];
    for (const n of names) {
      Deno.mkdirSync(`${root}/${n}`);
      Deno.writeTextFileSync(`${root}/${n}/x`, "partial");
    }
    const removed = cleanTemporaries(root).map((p) => p.slice(root.length + 1)).sort();
    assert.deepEqual(removed, [names[0], names[2]]);
    const left = [...Deno.readDirSync(root)].map((e) => e.name).sort();
    assert.deepEqual(left, [names[1], names[3], names[4]].sort());
    // train.ts cleans up when it starts, and says so.
    Deno.mkdirSync(`${root}/step-0000009.tmp-${dead}-00000000`);
    Deno.removeSync(`${root}/step-0000008`, { recursive: true });
    const r = await train([...TINY, "--steps", "1", "--out", `${TMP}/temporaries`]);
    assert.equal(r.code, 0, r.text);
    assert.match(r.text, /removed 1 unfinished checkpoint folder left by an interrupted run: \S+step-0000009\.tmp-/);
  } finally {
    sleeper.kill("SIGKILL");
    await sleeper.status;
  }
});

Deno.test("a folder lock: one holder at a time, named in the error; released by release() and by the holder's death", async () => {
  const dir = `${TMP}/lock`;
  Deno.mkdirSync(dir);
  const a = FolderLock.acquire(dir, "first");
  assert.throws(
    () => FolderLock.acquire(dir, "second"),
    (e) =>
      e instanceof LockError && e.holder?.pid === Deno.pid && e.holder.program === "first" &&
      /the folder is in use by first \(pid \d+ on .+, started \d{4}-\d\d-\d\dT/.test(e.message),
  );
  a.release();
  FolderLock.acquire(dir, "third").release();

  // Two train.ts on one --out: the second stops at once naming the first; once the first is
  // killed (SIGKILL: no chance to clean up), a third run takes the folder and resumes.
  const out = `${TMP}/two-runs`;
  const first = scriptCommand("train.ts", [...TINY, "--steps", "100000", "--checkpoint-every", "2", "--out", out])
    .spawn();
  first.stdout.pipeTo(new WritableStream());
  const firstErr = new Response(first.stderr).text();
  try {
    while (listCheckpoints(`${out}/checkpoints`).length === 0) await new Promise((r) => setTimeout(r, 20));
    const second = await train([...TINY, "--steps", "3", "--out", out]);
    assert.equal(second.code, 1);
    assert.match(
      second.text,
      new RegExp(`two-runs/\\.lock: the folder is in use by train\\.ts \\(pid ${first.pid} on `),
    );
  } finally {
    first.kill("SIGKILL");
    await first.status;
    await firstErr;
  }
  const newest = listCheckpoints(`${out}/checkpoints`).at(-1)!.step;
  const third = await train([...TINY, "--steps", String(newest + 1), "--resume", "--out", out]);
  assert.equal(third.code, 0, third.text);
  assert.match(third.text, new RegExp(`resumed from .* at step ${newest}`));
});

Deno.test("a fresh run into a folder with another run's checkpoints is refused; --fresh moves them aside", async () => {
  const out = `${TMP}/fresh`, ckpt = `${out}/checkpoints`;
  const flags = [...TINY, "--checkpoint-every", "1", "--out", out];
  assert.equal((await train([...flags, "--steps", "2"])).code, 0);
  const refused = await train([...flags, "--steps", "2"]);
  assert.equal(refused.code, 2);
  assert.match(
    refused.text,
    /--out holds another run's checkpoints \(newest: \S+step-0000002\): continue it with --resume/,
  );
  assert.deepEqual(listCheckpoints(ckpt).map((c) => c.step), [1, 2], "nothing was touched");
  const fresh = await train([...flags, "--steps", "1", "--fresh"]);
  assert.equal(fresh.code, 0, fresh.text);
  assert.deepEqual(listCheckpoints(ckpt).map((c) => c.step), [1], "only the new run's checkpoint");
  assert.deepEqual(listCheckpoints(`${ckpt}.previous`).map((c) => c.step), [1, 2], "the old run's, kept");
});
