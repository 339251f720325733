/**
 * Issue #12's goals as the benches measure them: each bench appends one JSON line per goal figure to a results file,
 * and bench/run.ts prints them together at the end ("Goals (#12)"). A bench run alone appends to the same file, so
 * `bench/run.ts footprint` after a full run replaces nothing: run.ts starts the file afresh for the benches it runs.
 *
 *   $BENCH_RESULTS, else test/.cache/bench/goals.jsonl
 */
import * as fs from "node:fs"
import * as path from "node:path"

export const resultsFile = (): string =>
  process.env["BENCH_RESULTS"] ?? path.resolve(import.meta.dirname, "..", "..", "test", ".cache", "bench", "goals.jsonl")

export interface Goal {
  /** What the issue asks, in its words (e.g. "agent CPU per span, OTLP http/protobuf"). */
  readonly goal: string
  readonly figure: number
  readonly unit: string
  /** The goal's bound in `unit`; `met` compares `figure` with it by `direction`. */
  readonly target: number
  /** "max": met when figure <= target (costs); "min": met when figure >= target. */
  readonly direction?: "max" | "min"
  /** What the figure is compared with: a floor measured in the same run, or the previous figure (issue #12's table). */
  readonly baseline?: { readonly name: string; readonly value: number } | undefined
  /** Conditions of the measurement a reader needs to weigh the figure (rate reached, binary size, ...). */
  readonly note?: string | undefined
}

export interface GoalRecord {
  readonly bench: string
  readonly at: string
  readonly goal: string
  readonly figure: number
  readonly unit: string
  readonly target: number
  readonly direction: "max" | "min"
  readonly met: boolean
  readonly ratio: number | null
  readonly baseline: string | null
  readonly note: string | null
}

/** Appends one goal figure; `bench` is the bench's file name without extension. */
export const record = (bench: string, g: Goal): GoalRecord => {
  const met = (g.direction ?? "max") === "max" ? g.figure <= g.target : g.figure >= g.target
  const rec: GoalRecord = {
    bench,
    at: new Date().toISOString(),
    goal: g.goal,
    figure: g.figure,
    unit: g.unit,
    target: g.target,
    direction: g.direction ?? "max",
    met,
    // A zero baseline (an idle figure below a clock tick) has no meaningful ratio.
    ratio: g.baseline !== undefined && g.baseline.value !== 0 ? g.figure / g.baseline.value : null,
    baseline: g.baseline === undefined ? null : `${g.baseline.name} ${formatNumber(g.baseline.value)}`,
    note: g.note ?? null
  }
  const file = resultsFile()
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.appendFileSync(file, JSON.stringify(rec) + "\n")
  return rec
}

export const read = (file: string = resultsFile()): Array<GoalRecord> =>
  fs.existsSync(file)
    ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as GoalRecord)
    : []

/** Three significant digits, no exponent: 0.0123, 1.23, 123, 12300. */
export const formatNumber = (x: number): string => {
  if (!Number.isFinite(x)) return String(x)
  const digits = Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : Math.abs(x) >= 1 ? 2 : 3
  return x.toFixed(digits)
}
