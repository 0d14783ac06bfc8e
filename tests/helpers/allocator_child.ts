// Run by tests/allocator_test.ts, one scenario per process so that no other test's tensors share
// the allocator: prints one JSON object of figures from cpuMemoryStats.
import {
  AdamW,
  cpuMemoryStats,
  emptyCpuCache,
  F,
  manualSeed,
  randint,
  randn,
  type Tensor,
  tidy,
  zeros,
} from "../../mod.ts";
import { UNet } from "../../src/models/unet/unet.ts";

const MiB = 1 << 20;
const stats = () => cpuMemoryStats()!;
/** A float32 tensor of `bytes` bytes. */
const block = (bytes: number): Tensor => zeros([bytes / 4]);

const scenarios: Record<string, () => unknown> = {
  off: () => ({ stats: cpuMemoryStats(), sum: zeros([MiB]).add(1).sum().item() }),

  counts: () => {
    const s0 = stats();
    const small = block(400);
    const s1 = stats();
    const large = block(MiB + 4); // one float past 1 MiB: rounds up to a whole page
    const s2 = stats();
    large.dispose();
    const s3 = stats();
    small.dispose();
    const s4 = stats();
    return {
      small: s1.allocated - s0.allocated,
      large: s2.allocated - s1.allocated,
      largeFreed: s2.allocated - s3.allocated,
      cachedAfterFree: s3.cached - s2.cached,
      back: s4.allocated - s0.allocated,
    };
  },

  merge: () => {
    const s0 = stats();
    const parts = [block(8 * MiB), block(8 * MiB), block(8 * MiB)];
    const s1 = stats();
    for (const p of parts) p.dispose();
    // The three freed neighbours merge: 24 MiB fits without a new mapping, and so does the
    // segment's last 8 MiB; only a further 8 MiB needs one.
    const joined = block(24 * MiB);
    const tail = block(8 * MiB);
    const s2 = stats();
    const extra = block(8 * MiB);
    const s3 = stats();
    for (const t of [joined, tail, extra]) t.dispose();
    emptyCpuCache();
    const s4 = stats();
    return {
      start: s0,
      mapsForThree: s1.segmentsMapped - s0.segmentsMapped,
      mapsForJoined: s2.segmentsMapped - s1.segmentsMapped,
      mapsForExtra: s3.segmentsMapped - s2.segmentsMapped,
      afterEmpty: s4,
    };
  },

  bound: () => {
    // Each size is larger than any freed segment, so each needs a mapping of its own; the idle
    // ones must be released to keep mapped bytes within 1.5 times the peak.
    let worst = 0;
    for (let mib = 33; mib <= 64; mib++) {
      const t = block(mib * MiB);
      t.dispose();
      const s = stats();
      worst = Math.max(worst, (s.allocated + s.cached) / s.peakAllocated);
    }
    return { worst, unmapped: stats().segmentsUnmapped };
  },

  steady: () => {
    manualSeed(0);
    const model = new UNet({
      imageSize: 16,
      modelChannels: 32,
      channelMult: [1, 2],
      attentionResolutions: [8],
      numResBlocks: 1,
    });
    const opt = new AdamW(model.parameters(), { lr: 1e-4 });
    const x = randn([4, 3, 16, 16]);
    const t = randint(0, 1000, [4]);
    const step = () =>
      tidy(() => {
        opt.zeroGrad();
        F.mseLoss(model.forward(x, t).output!, x).backward();
        opt.step();
      });
    step();
    step();
    const warm = stats();
    const after = [];
    for (let i = 0; i < 3; i++) {
      step();
      after.push(stats());
    }
    return { warm, after };
  },
};

const name = Deno.args[0];
const run = scenarios[name];
if (!run) throw new Error(`allocator_child.ts: unknown scenario ${name}`);
console.log(JSON.stringify(run()));
