// Data-parallel pre-training on one machine's CPUs: train.ts with 2 processes of 1 thread each
// (--nproc 2, Gloo over loopback, gradients summed every step) against 1 process of 2 threads, on
// the tiny preset and a small UNet, same global batch. Each side is a real train.ts run on the
// synthetic data; its figure is images per second over the steps after the warm-up, from the step
// times rank 0 logs (which include waiting for the other process and the all-reduce). Sides
// alternate within a round so that a noisy neighbour hits both; each figure is the best round's.
//
//   deno run -A bench/ddp.ts [--only tiny,small] [--steps 30] [--warmup 5] [--rounds 3] [--cache DIR]
import { flag, median } from "./util.ts";

const steps = Number(flag("steps") ?? 30);
const warmup = Math.max(1, Number(flag("warmup") ?? 5));
const rounds = Number(flag("rounds") ?? 3);
const cache = flag("cache") ?? ".cache/synthetic";
const TRAIN = new URL("../train.ts", import.meta.url).pathname;

// tiny: train.ts's preset (64², 32 channels, mult (1, 2, 2), batch 8). small: bench/pretrain.ts's
// small UNet (32², 32 channels, mult (1, 2), 2 ResBlocks, 4 heads), batch 8.
const CONFIGS: Record<string, string[]> = {
  tiny: ["--preset", "tiny", "--batch", "8"],
  small: [
    ...["--preset", "tiny", "--crop", "32", "--channel-mult", "1,2", "--num-res-blocks", "2"],
    ...["--attention-resolutions", "16", "--num-head-channels", "-1", "--num-heads", "4", "--no-resblock-updown"],
    ...["--batch", "8"],
  ],
};

interface Side {
  label: string;
  /** train.ts flags beyond the configuration's. */
  flags: string[];
}

const SIDES: Side[] = [
  { label: "1 process × 2 threads", flags: ["--threads", "2"] },
  { label: "2 processes × 1 thread", flags: ["--nproc", "2", "--threads", "1"] },
];

/** One train.ts run; returns images per second over the steps after the warm-up (median step time). */
async function measure(config: string[], side: Side): Promise<number> {
  const out = Deno.makeTempDirSync({ prefix: "mdm-bench-ddp-" });
  try {
    const args = [
      ...config,
      ...side.flags,
      ...["--steps", String(warmup + steps), "--picture-every", "0", "--checkpoint-every", "0"],
      ...["--cache", cache, "--out", out],
    ];
    const r = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", TRAIN, ...args], stderr: "piped" })
      .output();
    if (!r.success) throw new Error(`train.ts ${args.join(" ")} failed:\n${new TextDecoder().decode(r.stderr)}`);
    const log = Deno.readTextFileSync(`${out}/log.jsonl`).trim().split("\n").map((l) => JSON.parse(l));
    const batch = JSON.parse(Deno.readTextFileSync(`${out}/config.json`)).options.batch as number;
    return batch / median(log.slice(warmup).map((e, i) => e.seconds - log[warmup + i - 1].seconds));
  } finally {
    Deno.removeSync(out, { recursive: true });
  }
}

const names = flag("only")?.split(",") ?? Object.keys(CONFIGS);
console.log(
  `\nData-parallel pre-training on CPUs (${steps} steps after ${warmup} of warm-up, best of ${rounds} rounds)`,
);
console.log(`${"".padEnd(8)}  ${SIDES.map((s) => s.label.padStart(24)).join("  ")}  ${"ratio".padStart(6)}`);
for (const name of names) {
  const config = CONFIGS[name];
  if (!config) throw new Error(`--only: unknown configuration ${name} (known: ${Object.keys(CONFIGS).join(", ")})`);
  const best = SIDES.map(() => 0);
  for (let r = 0; r < rounds; r++) {
    for (const [i, side] of SIDES.entries()) {
      const ips = await measure(config, side);
      console.error(`${name} round ${r + 1}: ${side.label}: ${ips.toFixed(2)} images/s`);
      best[i] = Math.max(best[i], ips);
    }
  }
  // ratio = 2 processes / 1 process: above 1, the processes are faster.
  console.log(
    `${name.padEnd(8)}  ${best.map((b) => `${b.toFixed(2)} img/s`.padStart(24)).join("  ")}  ${
      (best[1] / best[0]).toFixed(3).padStart(6)
    }`,
  );
}
