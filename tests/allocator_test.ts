// The caching CPU allocator (native/allocator.cpp): its byte counts, reuse of freed memory, merging
// of free neighbours, the cache's bound, a training loop in steady state, and the opt-out. Each
// case runs in a process of its own (tests/helpers/allocator_child.ts), where no other tensors
// share the allocator, so the figures are exact.
import assert from "node:assert/strict";

const MiB = 1 << 20;

async function scenario(name: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./helpers/allocator_child.ts", import.meta.url).pathname, name],
    env,
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `allocator_child.ts ${name} failed:\n${stderr}`);
  // deno-lint-ignore no-explicit-any
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!) as any;
}

Deno.test("allocator: counts tensor bytes, large blocks in whole pages", async () => {
  const r = await scenario("counts");
  assert.equal(r.small, 400);
  assert.equal(r.large, MiB + 4096);
  assert.equal(r.largeFreed, MiB + 4096);
  // The freed block stays mapped for reuse.
  assert.equal(r.cachedAfterFree, MiB + 4096);
  assert.equal(r.back, 0);
});

Deno.test("allocator: freed neighbours merge and serve a larger block; emptyCpuCache unmaps", async () => {
  const r = await scenario("merge");
  assert.equal(r.start.segmentsMapped, 0, "the child process made large tensors before the test");
  assert.equal(r.mapsForThree, 1, "three 8 MiB blocks share one 32 MiB segment");
  assert.equal(r.mapsForJoined, 0, "24 + 8 MiB fit in the merged segment");
  assert.equal(r.mapsForExtra, 1);
  assert.equal(r.afterEmpty.cached, 0);
  assert.equal(r.afterEmpty.segmentsUnmapped, r.afterEmpty.segmentsMapped);
});

Deno.test("allocator: idle segments are released to keep mapped bytes within 1.5× the peak", async () => {
  // 32 sizes from 33 to 64 MiB, each freed before the next: 1.5 GiB if nothing were released.
  const r = await scenario("bound");
  assert.ok(r.worst <= 1.5 + 1e-3, `mapped / peak reached ${r.worst}`);
  assert.ok(r.unmapped >= 31, `only ${r.unmapped} segments released`);
});

Deno.test("allocator: training steps in steady state map nothing and leave allocation unchanged", async () => {
  const r = await scenario("steady");
  for (const s of r.after) {
    assert.equal(s.segmentsMapped, r.warm.segmentsMapped);
    assert.equal(s.allocated, r.warm.allocated);
  }
  // A training step does allocate: the parameters, their gradients and Adam's state stay live.
  assert.ok(r.warm.peakAllocated > r.warm.allocated);
});

Deno.test("allocator: MDM_CPU_CACHE=0 keeps libtorch's allocator", async () => {
  const r = await scenario("off", { MDM_CPU_CACHE: "0" });
  assert.equal(r.stats, null);
  assert.equal(r.sum, MiB);
});
