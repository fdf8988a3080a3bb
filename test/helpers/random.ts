// Deterministic pseudo-random numbers for property tests, so that a failure reproduces from its seed.

/** A deterministic pseudo-random u32 sequence (xorshift32) from `seed`. */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}
