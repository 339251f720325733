/**
 * Version ranges for Go toolchains ("1.24.3", "1.25rc1") and Go modules ("v1.62.0", "v0.0.0-2024...-abcdef").
 * A range is comparators joined by spaces (all must hold), alternatives joined by "||"; "*" or "" matches all.
 * Comparators: >=, >, <=, <, = (or bare), with missing components treated as 0 (">=1.21" is ">=1.21.0").
 */

interface Parsed {
  readonly parts: ReadonlyArray<number>
  /** Pre-releases sort before their release ("1.25rc1" < "1.25.0"); empty for a release. */
  readonly pre: string
}

const parse = (raw: string): Parsed | undefined => {
  const v = raw.trim().replace(/^go/, "").replace(/^v/, "")
  const m = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+]?((?:rc|beta|alpha)\d*|[0-9A-Za-z.-]*))?$/.exec(v)
  if (m === null) return undefined
  const parts = [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)]
  return { parts, pre: m[4] ?? "" }
}

const compare = (a: Parsed, b: Parsed): number => {
  for (let i = 0; i < 3; i++) {
    const d = (a.parts[i] ?? 0) - (b.parts[i] ?? 0)
    if (d !== 0) return d < 0 ? -1 : 1
  }
  if (a.pre === b.pre) return 0
  if (a.pre === "") return 1
  if (b.pre === "") return -1
  return a.pre < b.pre ? -1 : 1
}

/** Whether the string parses as a version. */
export const isValid = (version: string): boolean => parse(version) !== undefined

/** Compare two versions; undefined when either does not parse. */
export const compareVersions = (a: string, b: string): number | undefined => {
  const pa = parse(a)
  const pb = parse(b)
  return pa === undefined || pb === undefined ? undefined : compare(pa, pb)
}

const comparator = /^(>=|<=|>|<|=)?\s*(\S+)$/

/** Whether a range string is well formed. */
export const isValidRange = (range: string): boolean =>
  range.split("||").every((alt) =>
    alt.trim() === "" || alt.trim() === "*" ||
    alt.trim().split(/\s+/).every((c) => {
      const m = comparator.exec(c)
      return m !== null && parse(m[2]!) !== undefined
    })
  )

/** Whether `version` is in `range`. A version that does not parse is in no range except "*". */
export const satisfies = (version: string, range: string): boolean => {
  const trimmed = range.trim()
  if (trimmed === "" || trimmed === "*") return true
  const v = parse(version)
  if (v === undefined) return false
  return trimmed.split("||").some((alt) => {
    const cs = alt.trim()
    if (cs === "" || cs === "*") return true
    return cs.split(/\s+/).every((c) => {
      const m = comparator.exec(c)
      if (m === null) return false
      const bound = parse(m[2]!)
      if (bound === undefined) return false
      const d = compare(v, bound)
      switch (m[1]) {
        case ">=":
          return d >= 0
        case ">":
          return d > 0
        case "<=":
          return d <= 0
        case "<":
          return d < 0
        default:
          return d === 0
      }
    })
  })
}
