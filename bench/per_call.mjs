// The benches' per-call timer, in plain JavaScript so that bench/util.ts (Deno) and
// bench/node_side.mjs (Node, which cannot import TypeScript) share one copy.

/**
 * Milliseconds per call of `fn`: the best of `repeats` timed loops of `n` calls, after n/10 warm-up calls.
 * @param {() => void} fn
 * @param {number} n
 * @param {number} [repeats]
 * @returns {number}
 */
export function perCall(fn, n, repeats = 5) {
  for (let i = 0; i < Math.max(1, n / 10); i++) fn();
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    best = Math.min(best, (performance.now() - t0) / n);
  }
  return best;
}
