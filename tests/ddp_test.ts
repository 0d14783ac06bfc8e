// Data-parallel pre-training (train.ts over src/dist), as a user runs it, over loopback: 2 processes
// with the global batch 8 (4 each) train exactly what 1 process with batch 8 in micro-batches of 4
// trains (MDM with a --resume in between, and DDPM), rank 0 alone writing --out; a rank killed
// mid-run makes the other fail with a named error within --dist-timeout, and --nproc stops the rest
// as soon as one dies; a wrong master address fails clearly within the timeout; a checkpoint is
// resumed only with its own number of processes; the flags that place a process are checked by name.
// In this process: the group helper on a group of one, and a rank's share of the loader's crops.
import assert from "node:assert/strict";
import { loadSafetensors } from "../mod.ts";
import { parseArgs, runMain, UsageError } from "../src/cli/args.ts";
import { distributedFrom, PRETRAIN_SPEC } from "../src/cli/pretrain_flags.ts";
import { RandomCropLoader } from "../src/data/folder.ts";
import { ensureSyntheticDataset } from "../src/data/synthetic.ts";
import { DataParallelGroup } from "../src/dist/data_parallel.ts";
import { backendAvailable, ProcessGroup } from "../src/dist/process_group.ts";
import { tensor } from "../src/create.ts";
import { checkTrainState, listCheckpoints, readTrainState } from "../src/mdm/train_state.ts";
import { main as trainMain } from "../train.ts";
import { ROOT, runScript, tempDir } from "./helpers/scripts.ts";

const GLOO = backendAvailable("gloo");
const TMP = tempDir("mdm_ddp_test_");
const CACHE = `${TMP}/cache`;
await ensureSyntheticDataset(CACHE, {});
// What a failure may take beyond the timeout: a process starting, joining, unwinding, reporting.
const SLACK_MS = 8000;

// A UNet whose step takes tens of milliseconds; one libtorch thread per process. The micro-batch is
// given, so that one process and two split the batch 8 into the same micro-batches of 4.
const TINY = [
  ...["--crop", "32", "--model-channels", "32", "--channel-mult", "1,2", "--num-res-blocks", "1"],
  ...["--attention-resolutions", "16", "--num-head-channels", "32", "--batch", "8", "--micro-batch", "4"],
  ...["--threads", "1", "--cache", CACHE, "--picture-every", "0"],
];

interface LogEntry {
  step: number;
  loss: number;
}

function readLog(out: string): LogEntry[] {
  return Deno.readTextFileSync(`${out}/log.jsonl`).split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

async function trainOk(args: string[]): Promise<string> {
  const r = await runScript("train.ts", args);
  assert.equal(r.code, 0, `train.ts ${args.join(" ")} exited with ${r.code}:\n${r.stderr.slice(-3000)}`);
  return r.stderr;
}

/** The largest difference between the tensors of two safetensors files with the same keys. */
function maxDifference(a: string, b: string): number {
  using x = loadSafetensors(a);
  using y = loadSafetensors(b);
  assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort(), `${a} and ${b} hold other keys`);
  let worst = 0;
  for (const [k, t] of x) worst = Math.max(worst, t.sub(y.get(k)!).abs().amax().item());
  return worst;
}

/** Both runs' final weights and EMA agree within 1e-5, and their losses step by step. */
function assertSameRun(one: string, two: string): void {
  for (const file of ["model", "ema"]) {
    const d = maxDifference(`${one}/${file}.safetensors`, `${two}/${file}.safetensors`);
    console.log(`${file}: largest difference between 1 and 2 processes ${d}`);
    assert.ok(d <= 1e-5, `${file}.safetensors: 1 and 2 processes differ by up to ${d}`);
  }
  const a = readLog(one), b = readLog(two);
  assert.deepEqual(b.map((e) => e.step), a.map((e) => e.step), "one log line per step");
  b.forEach((e, i) =>
    assert.ok(Math.abs(e.loss - a[i].loss) <= 1e-6, `step ${e.step}: loss ${e.loss} vs ${a[i].loss}`)
  );
}

/** The files of an output folder, as relative paths (the lock file aside), sorted. */
function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of Deno.readDirSync(d)) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) walk(`${d}/${e.name}`, r);
      else if (e.name !== ".lock") out.push(r);
    }
  };
  walk(dir, "");
  return out.sort();
}

Deno.test({
  name: "ddp: 2 processes × 4 equal 1 process with batch 8 over 5 MDM steps, through a --resume; rank 0 writes",
  ignore: !GLOO,
  async fn() {
    const one = `${TMP}/mdm-1`, two = `${TMP}/mdm-2`;
    await trainOk([...TINY, "--steps", "5", "--checkpoint-every", "3", "--out", one]);
    const first = await trainOk([...TINY, "--nproc", "2", "--steps", "3", "--checkpoint-every", "3", "--out", two]);
    assert.match(first, /starting 2 processes of 1 thread each/);
    assert.match(first, /steps of batch 8 \(2 processes × 4, micro-batches of 4\)/);
    const resumed = await trainOk([...TINY, "--nproc", "2", "--steps", "5", "--resume", "--out", two]);
    assert.match(resumed, /resumed from \S+step-0000003 at step 3/);
    assertSameRun(one, two);

    // Rank 0 alone wrote, the same files a single process writes; the checkpoints say 2 processes.
    assert.deepEqual(files(two), files(one));
    assert.deepEqual(listCheckpoints(`${two}/checkpoints`).map((c) => c.step), [3, 5]);
    for (const c of listCheckpoints(`${two}/checkpoints`)) assert.equal(readTrainState(c.path).worldSize, 2);
    assert.equal(readTrainState(`${one}/checkpoints/step-0000005`).worldSize, 1);
    const config = JSON.parse(Deno.readTextFileSync(`${two}/config.json`));
    assert.equal(config.worldSize, 2);
    assert.equal(config.threads, 1);
    // The other ranks print nothing of their own when all goes well.
    assert.doesNotMatch(first + resumed, /\[rank 1\]/);

    // A checkpoint continues only with its own number of processes.
    const r1 = await runScript("train.ts", [...TINY, "--steps", "6", "--resume", "--out", two]);
    assert.equal(r1.code, 2, r1.stderr);
    assert.match(
      r1.stderr,
      /^train\.ts: --resume: the checkpoint \S+step-0000005 was trained by 2 processes and this run has 1: resume it with --nproc 2 \(or --world-size 2\)/m,
    );
    const r2 = await runScript("train.ts", [...TINY, "--nproc", "2", "--steps", "6", "--resume", "--out", one]);
    assert.equal(r2.code, 2, r2.stderr);
    assert.match(
      r2.stderr,
      /^train\.ts: --resume: the checkpoint \S+step-0000005 was trained by 1 process and this run has 2/m,
    );
    assert.match(r2.stderr, /rank [01] exited with code 2; stopping the other processes/);
    assert.equal(readLog(two).length, 5, "a refused resume leaves the log alone");

    // state.json: without the field (older checkpoints) one process; a count that cannot split the batch is refused.
    const raw = JSON.parse(Deno.readTextFileSync(`${two}/checkpoints/step-0000005/state.json`));
    delete raw.worldSize;
    assert.equal(checkTrainState(raw).worldSize, 1);
    assert.throws(
      () => checkTrainState({ ...raw, worldSize: 3 }),
      /worldSize is 3: so many processes do not split the batch 8 into micro-batches of 4/,
    );
  },
});

Deno.test({
  name: "ddp: DataParallelGroup on a group of one: gradients (a missing one as zeros), sums, bytes, JSON",
  ignore: !GLOO,
  fn() {
    using group = ProcessGroup.create({ masterAddr: "127.0.0.1", masterPort: freePort(), rank: 0, worldSize: 1 });
    const dp = new DataParallelGroup(group, "cpu", 16);
    using a = tensor([1.5, -2], { device: "cpu" }).requiresGrad_();
    using b = tensor([[3, 4], [5, 6]], { device: "cpu" }).requiresGrad_();
    a.mul(a).sum().backward(); // b gets no gradient
    assert.equal(b.grad, null);
    assert.equal(dp.syncGradients([a, b]), 2, "two buckets of at most 16 bytes");
    assert.deepEqual([...a.grad!.toArray()], [3, -4]);
    assert.deepEqual([...b.grad!.toArray()], [0, 0, 0, 0]);
    assert.equal(dp.sumLoss(0.1 + 0.2), 0.1 + 0.2, "in float64");
    assert.equal(dp.countFailures(true), 1);
    assert.equal(dp.countFailures(false), 0);
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) % 256);
    assert.deepEqual(dp.broadcastBytes(bytes), bytes);
    assert.deepEqual(dp.broadcastJson({ x: [1, "two", null] }), { x: [1, "two", null] });
    dp.barrier();
  },
});

Deno.test("ddp: a rank's share of the crops is the whole batch's, the stream advancing as for the whole", () => {
  const image = (k: number) => ({
    name: `im${k}`,
    image: {
      width: 20,
      height: 17,
      channels: 3 as const,
      data: Uint8Array.from({ length: 20 * 17 * 3 }, (_, i) => (i * (k + 3)) % 256),
    },
  });
  const images = [0, 1, 2].map(image);
  const whole = new RandomCropLoader(images, { cropSize: 8, seed: 5 });
  const part = new RandomCropLoader(images, { cropSize: 8, seed: 5 });
  const plane = 3 * 8 * 8;
  for (let step = 0; step < 4; step++) {
    const all = whole.nextBatchData(6);
    const mine = part.nextBatchData(6, { only: [2, 4] });
    assert.deepEqual(mine.subarray(2 * plane, 4 * plane), all.subarray(2 * plane, 4 * plane), `step ${step}`);
    assert.ok(mine.subarray(0, 2 * plane).every((v) => v === 0) && mine.subarray(4 * plane).every((v) => v === 0));
  }
  assert.deepEqual(part.getState(), whole.getState());
  // As a tensor: the same values, the blank crops made as zeros on the device.
  const again = new RandomCropLoader(images, { cropSize: 8, seed: 5 });
  const first = new RandomCropLoader(images, { cropSize: 8, seed: 5 }).nextBatchData(6, { only: [2, 4] });
  using batch = again.nextBatch(6, { only: [2, 4] });
  assert.deepEqual(batch.shape, [6, 3, 8, 8]);
  assert.deepEqual(batch.toArray(), first);
  assert.throws(
    () => part.nextBatchData(6, { only: [4, 7] }),
    /only must be a range \[start, end\) within the batch of 6/,
  );
});

Deno.test({
  name: "ddp: 2 processes × 4 equal 1 process with batch 8 over 5 DDPM steps",
  ignore: !GLOO,
  async fn() {
    const one = `${TMP}/ddpm-1`, two = `${TMP}/ddpm-2`;
    const flags = [...TINY, "--method", "ddpm", "--steps", "5"];
    await trainOk([...flags, "--out", one]);
    await trainOk([...flags, "--nproc", "2", "--out", two]);
    assertSameRun(one, two);
  },
});

/** A train.ts process in the background, its output collected. */
class Background {
  readonly child: Deno.ChildProcess;
  readonly status: Promise<Deno.CommandStatus>;
  readonly stderr: Promise<string>;
  exitedAt = 0;

  constructor(args: string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}train.ts`, ...args],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.status = this.child.status.then((s) => {
      this.exitedAt = performance.now();
      return s;
    });
    this.child.stdout.pipeTo(new WritableStream());
    this.stderr = new Response(this.child.stderr).text();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the run's log has a line (training is under way), or fails after a minute. */
async function training(out: string, runs: Background[]): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (performance.now() < deadline) {
    try {
      if (readLog(out).length > 0) return;
    } catch { /* not yet written */ }
    if (runs.some((r) => r.exitedAt > 0)) break;
    await sleep(50);
  }
  throw new Error(`${out}: no step logged:\n${(await Promise.all(runs.map((r) => r.stderr))).join("\n")}`);
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test({
  name: "ddp: a rank killed mid-run makes the other fail within --dist-timeout, naming the call and its rank",
  ignore: !GLOO,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const out = `${TMP}/killed`, timeout = 20;
    const port = String(freePort());
    const ranks = [0, 1].map((r) =>
      new Background([
        ...TINY,
        ...["--steps", "100000", "--out", out, "--dist-timeout", String(timeout)],
        ...["--world-size", "2", "--rank", String(r), "--master-addr", "127.0.0.1", "--master-port", port],
      ])
    );
    try {
      await training(out, ranks);
      ranks[1].child.kill("SIGKILL");
      const killedAt = performance.now();
      const status = await ranks[0].status;
      const stderr = await ranks[0].stderr;
      assert.equal(status.code, 1, stderr);
      assert.match(
        stderr,
        /^train\.ts: step \d+: ProcessGroup\.allReduceBuckets\(\d+ tensors\) on rank 0 of 2 \(gloo, master 127\.0\.0\.1:\d+\): .*another process of the run failed or stopped answering/m,
      );
      const ms = ranks[0].exitedAt - killedAt;
      assert.ok(ms < timeout * 1000 + SLACK_MS, `rank 0 stopped ${ms} ms after rank 1 was killed`);
    } finally {
      for (const r of ranks) {
        try {
          r.child.kill("SIGKILL");
        } catch { /* exited */ }
        await r.status;
        await r.stderr;
      }
    }
  },
});

/** The processes whose parent is `pid` (over every thread of it: a runtime may spawn from any). */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    const text = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`).trim();
    if (text) found.push(...text.split(/\s+/).map(Number));
  }
  return found;
}

function rankOf(pid: number): number | null {
  const env = Deno.readTextFileSync(`/proc/${pid}/environ`).split("\0");
  const v = env.find((e) => e.startsWith("RANK="));
  return v ? Number(v.slice(5)) : null;
}

Deno.test({
  name: "ddp: --nproc stops the other processes as soon as one dies, and says which",
  ignore: !GLOO || Deno.build.os !== "linux",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const out = `${TMP}/nproc-killed`;
    // A timeout far above what the test waits: the launcher, not the timeout, must end the run.
    const run = new Background([...TINY, "--nproc", "2", "--steps", "100000", "--out", out, "--dist-timeout", "600"]);
    try {
      await training(out, [run]);
      const rank1 = childrenOf(run.child.pid).find((p) => rankOf(p) === 1);
      assert.ok(rank1 !== undefined, "rank 1's process was not found");
      Deno.kill(rank1, "SIGKILL");
      const killedAt = performance.now();
      const status = await run.status;
      const stderr = await run.stderr;
      assert.notEqual(status.code, 0, stderr);
      assert.match(stderr, /^train\.ts: rank 1 was killed by SIGKILL; stopping the other processes$/m);
      const ms = run.exitedAt - killedAt;
      assert.ok(ms < 60_000, `the run ended ${ms} ms after rank 1 was killed`);
    } finally {
      try {
        run.child.kill("SIGKILL");
      } catch { /* exited */ }
      await run.status;
      await run.stderr;
    }
  },
});

Deno.test({
  name: "ddp: a master address where nothing listens fails with the address within --dist-timeout",
  ignore: !GLOO,
  async fn() {
    const port = freePort();
    const start = performance.now();
    const r = await runScript("train.ts", [
      ...TINY,
      ...["--steps", "3", "--out", `${TMP}/nowhere`, "--dist-timeout", "3"],
      ...["--world-size", "2", "--rank", "1", "--master-addr", "127.0.0.2", "--master-port", String(port)],
    ]);
    const ms = performance.now() - start;
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr.trim(),
      new RegExp(
        `^train\\.ts: ProcessGroup\\.create\\(\\) on rank 1 of 2 \\(gloo, master 127\\.0\\.0\\.2:${port}\\): ` +
          `rank 1 cannot reach the rendezvous store of rank 0 at 127\\.0\\.0\\.2:${port} .*within 3000 ms`,
      ),
    );
    assert.ok(ms < 3000 + SLACK_MS, `failed after ${ms} ms`);
    assert.throws(() => Deno.statSync(`${TMP}/nowhere`), "rank 1 writes nothing");
  },
});

Deno.test("ddp: the flags and variables that place a process are checked by name", async (t) => {
  const place = (argv: string[], env: Record<string, string> = {}) =>
    distributedFrom(parseArgs(PRETRAIN_SPEC, argv), env);
  await t.step("torchrun's variables, overridden by the flags", () => {
    assert.deepEqual(place([]), { launch: null, worker: null, timeoutMs: 1_800_000 });
    assert.deepEqual(place(["--nproc", "4", "--dist-timeout", "5"]), { launch: 4, worker: null, timeoutMs: 5000 });
    assert.equal(place(["--nproc", "1"]).launch, null, "one process is a single process");
    const env = { WORLD_SIZE: "4", RANK: "2", LOCAL_RANK: "0", MASTER_ADDR: "node0", MASTER_PORT: "1234" };
    assert.deepEqual(place([], env).worker, {
      worldSize: 4,
      rank: 2,
      localRank: 0,
      masterAddr: "node0",
      masterPort: 1234,
    });
    assert.deepEqual(
      place(["--world-size", "2", "--rank", "1", "--master-addr", "10.0.0.1"]).worker,
      { worldSize: 2, rank: 1, localRank: 1, masterAddr: "10.0.0.1", masterPort: 29500 },
    );
    assert.equal(place(["--rank", "3"], env).worker!.rank, 3);
    assert.equal(place(["--world-size", "1"]).worker, null, "a world of one is a single process");
  });
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    [
      "--nproc with --rank",
      ["--nproc", "2", "--rank", "1"],
      {},
      /--nproc starts its own processes .* does not take --rank/,
    ],
    [
      "--nproc in a rank",
      ["--nproc", "2"],
      { WORLD_SIZE: "2", RANK: "0" },
      /--nproc 2: WORLD_SIZE=2 and RANK=0 are set/,
    ],
    ["--rank alone", ["--rank", "1"], {}, /--rank needs --world-size \(or WORLD_SIZE\)/],
    ["--world-size without --rank", ["--world-size", "2", "--master-addr", "h"], {}, /--world-size 2 needs --rank/],
    ["no master", ["--world-size", "2", "--rank", "1"], {}, /--world-size 2 needs --master-addr \(or MASTER_ADDR\)/],
    [
      "--rank out of the world",
      ["--world-size", "2", "--rank", "2", "--master-addr", "h"],
      {},
      /--rank 2 must be below --world-size 2/,
    ],
    [
      "--rank out of WORLD_SIZE",
      ["--rank", "5"],
      { WORLD_SIZE: "4", MASTER_ADDR: "h" },
      /--rank 5 must be below WORLD_SIZE=4/,
    ],
    ["a bad RANK", [], { WORLD_SIZE: "2", RANK: "x", MASTER_ADDR: "h" }, /RANK="x": must be an integer in 0\.\.1/],
  ];
  for (const [what, argv, env, message] of cases) {
    await t.step(
      what,
      () => assert.throws(() => place(argv, env), (e) => e instanceof UsageError && message.test(e.message)),
    );
  }
  await t.step(
    "a batch that does not split into whole micro-batches per process: exit 2 before any starts",
    async () => {
      const lines: string[] = [];
      const code = await runMain(
        "train.ts",
        trainMain,
        [...TINY, "--nproc", "3", "--out", `${TMP}/x`],
        (l) => lines.push(l),
      );
      assert.equal(code, 2);
      assert.match(lines[0], /--batch 8 does not split among 3 processes/);
      const code2 = await runMain(
        "train.ts",
        trainMain,
        [...TINY, "--nproc", "2", "--micro-batch", "8", "--out", `${TMP}/x`],
        (l) => lines.push(l),
      );
      assert.equal(code2, 2);
      assert.match(lines[1], /--batch 8 must be a multiple of 2 processes × --micro-batch 8 \(16\)/);
      assert.throws(() => Deno.statSync(`${TMP}/x`), "nothing was started");
    },
  );
});
