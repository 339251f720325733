/** A small deterministic PRNG (xorshift32) for the fuzz tests: the same seed gives the same inputs, so a failure reproduces. */
export const rng = (seed: number) => {
  let s = seed >>> 0 || 1
  return (n: number): number => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s % n
  }
}
