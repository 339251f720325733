/**
 * The compact form of the offsets table, shared by the generator (scripts/gen-offsets.ts) and the lookup
 * (src/target/Offsets.ts).
 *
 * What a generation measures is a cell: (module version, Go version) → offset, one per program built. Stored as is,
 * 26 grpc releases × 3 Go releases × 30 fields would be thousands of lines nobody reviews, and almost all of them
 * repeat: a layout changes at a few releases only. So a field keeps runs: `{ versions: [from, to], go?: [from, to],
 * offset }`, both bounds inclusive and naming built versions (`builds`). An entry without `go` holds for every Go
 * its versions were built with. `expand` gives back exactly the cells `compress` was given.
 */

type Dict<A> = Readonly<Record<string, A>>

/** One run of equal offsets. */
export interface OffsetEntry {
  /** First and last built module version of the run (inclusive; for "std": Go versions). */
  readonly versions: readonly [string, string]
  /** First and last Go version of the run (inclusive); absent: every Go each of those versions was built with. */
  readonly go?: readonly [string, string]
  readonly offset: number
}

/** One module of the table (or "std", the standard library, whose versions are Go versions). */
export interface ModuleOffsets {
  /** The generation's inputs: module version → the Go versions a program using it was built with. */
  readonly builds: Dict<ReadonlyArray<string>>
  /**
   * Dependencies whose types are recorded here too (a grpc build's genproto, x/net): module → the versions the
   * builds resolved. Looked up with this module's version; the layouts of those types held across all builds.
   */
  readonly dependencies?: Dict<ReadonlyArray<string>>
  /**
   * Module version → the oldest Go its go.mod accepts, when that excludes a supported Go (grpc 1.85 needs Go
   * 1.26): no binary can pair them, so they are not built.
   */
  readonly needsGo?: Dict<string>
  /** Type (as DWARF names it, package path + "." + name) → field → runs. */
  readonly types: Dict<Dict<ReadonlyArray<OffsetEntry>>>
}

/** Parses "1.24.3", "v1.60.1", "v9.0.0-beta.1" (pre-release ignored) into numbers; undefined otherwise. */
export const parseVersion = (v: string): [number, number, number] | undefined => {
  const m = /^(?:go)?v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(v)
  return m === null ? undefined : [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)]
}

/** Numeric order of versions (pre-release suffixes ignored); unparsable versions sort first. */
export const compareVersions = (a: string, b: string): number => {
  const pa = parseVersion(a) ?? [-1, 0, 0]
  const pb = parseVersion(b) ?? [-1, 0, 0]
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!
  return 0
}

/** The release line of a version: "1.60" for v1.60.1 and for Go 1.60.0. Patch releases keep a line's layouts. */
export const lineOf = (v: string): string | undefined => {
  const p = parseVersion(v)
  return p === undefined ? undefined : `${p[0]}.${p[1]}`
}

/**
 * The built version that stands for `version`: the same version, else the closest lower built patch of its line,
 * else the lowest built patch of its line. Undefined when no version of its line was built.
 */
export const representative = (built: ReadonlyArray<string>, version: string): string | undefined => {
  const line = lineOf(version)
  if (line === undefined) return undefined
  const same = built.filter((b) => lineOf(b) === line).sort(compareVersions)
  if (same.length === 0) return undefined
  const exact = same.find((b) => b === version || b === `v${version}` || `v${b}` === version)
  if (exact !== undefined) return exact
  const lower = same.filter((b) => compareVersions(b, version) <= 0)
  return lower.length > 0 ? lower[lower.length - 1]! : same[0]!
}

/** The built lines as a short text, consecutive minors joined: "1.60–1.85", "1.22, 1.24–1.27". */
export const describeLines = (built: ReadonlyArray<string>): string => {
  const lines = [...new Set(built.map(lineOf).filter((l) => l !== undefined))].sort(compareVersions)
  const runs: Array<[string, string]> = []
  for (const l of lines) {
    const last = runs[runs.length - 1]
    const [lm, ln] = last === undefined ? [-1, -1] : last[1].split(".").map(Number) as [number, number]
    const [m, n] = l.split(".").map(Number) as [number, number]
    if (last !== undefined && lm === m && ln + 1 === n) last[1] = l
    else runs.push([l, l])
  }
  return runs.map(([a, b]) => (a === b ? a : `${a}–${b}`)).join(", ")
}

/** Cells of one field: "moduleVersion|goVersion" → offset. */
export type Cells = Map<string, number>

export const cellKey = (version: string, go: string): string => `${version}|${go}`

const within = (v: string, [from, to]: readonly [string, string]): boolean =>
  compareVersions(v, from) >= 0 && compareVersions(v, to) <= 0

/** The offset an entry list gives for one build, if any. */
export const offsetAt = (
  entries: ReadonlyArray<OffsetEntry>,
  version: string,
  go: string
): number | undefined => entries.find((e) => within(version, e.versions) && (e.go === undefined || within(go, e.go)))
  ?.offset

/** Every cell the entries give for the builds. */
export const expand = (builds: Dict<ReadonlyArray<string>>, entries: ReadonlyArray<OffsetEntry>): Cells => {
  const cells: Cells = new Map()
  for (const [v, gos] of Object.entries(builds)) {
    for (const g of gos) {
      const off = offsetAt(entries, v, g)
      if (off !== undefined) cells.set(cellKey(v, g), off)
    }
  }
  return cells
}

/**
 * Runs over the builds (versions ascending). A version whose every Go build agrees (the usual case) joins the
 * current run when its offset is the run's and no version was skipped between them (a skipped version, where the
 * field is absent, must stay uncovered). A version whose Go builds disagree gets one entry per Go run.
 */
export const compress = (builds: Dict<ReadonlyArray<string>>, cells: Cells): Array<OffsetEntry> => {
  const versions = Object.keys(builds).sort(compareVersions)
  const out: Array<OffsetEntry> = []
  let run: { from: string; to: string; offset: number } | undefined
  const flush = () => {
    if (run !== undefined) out.push({ versions: [run.from, run.to], offset: run.offset })
    run = undefined
  }
  for (const v of versions) {
    const gos = [...builds[v]!].sort(compareVersions)
    const offs = gos.map((g) => cells.get(cellKey(v, g)))
    const uniform = offs.every((o) => o !== undefined && o === offs[0])
    if (uniform && offs.length > 0) {
      if (run !== undefined && run.offset === offs[0]) run.to = v
      else {
        flush()
        run = { from: v, to: v, offset: offs[0]! }
      }
      continue
    }
    flush()
    // Per Go: runs of equal offsets over this version's Go builds (an absent cell ends a run).
    let g0: { from: string; to: string; offset: number } | undefined
    gos.forEach((g, i) => {
      const o = offs[i]
      if (o !== undefined && g0 !== undefined && g0.offset === o) g0.to = g
      else {
        if (g0 !== undefined) out.push({ versions: [v, v], go: [g0.from, g0.to], offset: g0.offset })
        g0 = o === undefined ? undefined : { from: g, to: g, offset: o }
      }
    })
    if (g0 !== undefined) out.push({ versions: [v, v], go: [g0.from, g0.to], offset: g0.offset })
  }
  flush()
  return out
}
