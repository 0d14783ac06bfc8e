// A small seedable PRNG in TypeScript (xoshiro128**) for the data layer. It lives on the JS side,
// apart from libtorch's generators (src/random.ts, which tensor ops draw from), so that data
// sampling neither disturbs nor depends on model randomness, costs no native call per draw, and its
// whole state is four 32-bit words that round-trip through JSON for exact resume.

/** The generator's full state, as plain JSON. */
export interface RngState {
  /** The algorithm, always "xoshiro128**". */
  kind: "xoshiro128**";
  /** The four 32-bit state words (not all zero). */
  s: [number, number, number, number];
}

// splitmix32: spreads a seed over the state words so that nearby seeds give unrelated streams.
function splitmix32(x: number): [number, number] {
  const next = (x + 0x9e3779b9) >>> 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [next, (z ^ (z >>> 16)) >>> 0];
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * A seedable xoshiro128** stream for the data layer (crops, flips, orders): deterministic for a
 * seed, independent of libtorch's generators, and resumable through `getState` / `fromState`.
 */
export class Rng {
  #s = new Uint32Array(4);

  /** Seeds from a non-negative safe integer, or from a list (e.g. [seed, imageIndex]) for sub-streams. */
  constructor(seed: number | readonly number[] = 0) {
    const parts = typeof seed === "number" ? [seed] : seed;
    let x = 0x6a09e667;
    for (const p of parts) {
      if (!Number.isSafeInteger(p) || p < 0) throw new RangeError(`Rng: seed must be a non-negative integer, got ${p}`);
      // Fold both halves of a 53-bit seed in, so seeds above 2^32 differ too.
      [x] = splitmix32((x ^ (p >>> 0)) >>> 0);
      [x] = splitmix32((x ^ Math.floor(p / 2 ** 32)) >>> 0);
    }
    for (let i = 0; i < 4; i++) [x, this.#s[i]] = splitmix32(x);
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1; // all-zero is a fixed point
  }

  /**
   * A generator continuing from a saved state.
   * @throws TypeError when `state` is not a valid xoshiro128** state.
   */
  static fromState(state: RngState): Rng {
    const r = new Rng(0);
    r.setState(state);
    return r;
  }

  /** The full state, as plain JSON-safe data. */
  getState(): RngState {
    const s = this.#s;
    return { kind: "xoshiro128**", s: [s[0], s[1], s[2], s[3]] };
  }

  /**
   * Continues from a saved state.
   * @throws TypeError when `state` is not a valid xoshiro128** state.
   */
  setState(state: RngState): void {
    const ok = state?.kind === "xoshiro128**" && Array.isArray(state.s) && state.s.length === 4 &&
      state.s.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32) && state.s.some((w) => w !== 0);
    if (!ok) throw new TypeError(`Rng: not a xoshiro128** state: ${JSON.stringify(state)}`);
    this.#s.set(state.s);
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** A uniform float in [0, 1). */
  next(): number {
    return this.u32() / 2 ** 32;
  }

  /** A uniform float in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** A uniform integer in [0, n), without modulo bias (rejection on the 32-bit draw). */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) throw new RangeError(`Rng.int: n must be in [1, 2^32], got ${n}`);
    const limit = 2 ** 32 - (2 ** 32 % n);
    let x = this.u32();
    while (x >= limit) x = this.u32();
    return x % n;
  }

  /** A standard normal draw (Box-Muller; the second value is dropped so the state stays four words). */
  normal(): number {
    const u = 1 - this.next(); // (0, 1]: log stays finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** Shuffles `a` in place (Fisher-Yates) and returns it. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}
