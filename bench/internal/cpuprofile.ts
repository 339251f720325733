/**
 * A summary of a V8 CPU profile (`node --cpu-prof`) over a time window: the share of main-thread CPU by agent stage,
 * and the functions with the most self time. A sample counts for the stage of its innermost frame that names one
 * (the source file decides), so Node's own frames (Buffer, streams) and native frames count for the agent code that
 * called them, except networking, which is the HTTP send stage wherever it is called from.
 */
import * as fs from "node:fs"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}

interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  /** µs, on the clock of process.hrtime (CLOCK_MONOTONIC) on Linux. */
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export const stages = [
  "kernel binding/ring",
  "decode (probe runner, layouts)",
  "instrumentation signals",
  "telemetry/metrics",
  "OTLP encode",
  "HTTP send",
  "Effect runtime",
  "GC",
  "other"
] as const
export type Stage = (typeof stages)[number]

/**
 * The source file of a frame. The CLI runs as an esbuild bundle (dist/cli/probescope*.mjs) whose modules keep their
 * origin in a `// <path>` comment line above each one's code: a bundle line maps to the last such comment above it.
 */
const sourceOf = (() => {
  const markers = new Map<string, Array<[number, string]>>()
  return (url: string, line: number): string => {
    if (!url.endsWith(".mjs") || !url.startsWith("file://")) return url
    let m = markers.get(url)
    if (m === undefined) {
      m = []
      try {
        const lines = fs.readFileSync(new URL(url), "utf8").split("\n")
        lines.forEach((l, i) => {
          const c = /^\/\/ ((?:node_modules|src|dist)[^ ]*\.[cm]?[jt]s)$/.exec(l)
          if (c) m!.push([i, c[1]!])
        })
      } catch {
        // The bundle was rebuilt since: frames keep the bundle's name.
      }
      markers.set(url, m)
    }
    let lo = 0
    let hi = m.length - 1
    let found = url
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (m[mid]![0] <= line) {
        found = `/${m[mid]![1]}`
        lo = mid + 1
      } else hi = mid - 1
    }
    return found
  }
})()

/** The stage a frame's own file names, or undefined when the frame counts for its caller's. */
const stageOf = (f: CallFrame): Stage | "idle" | undefined => {
  if (f.functionName === "(idle)") return "idle"
  if (f.functionName === "(garbage collector)") return "GC"
  if (f.functionName === "(program)" || f.functionName === "(root)") return "other"
  const u = sourceOf(f.url, f.lineNumber)
  if (u === "") return undefined // native (the addon, builtins): its caller's stage
  // Networking, wherever it is called from: sockets, HTTP/1 and HTTP/2, and the exporters' transport.
  if (/^node:(net|_http_|http2?$|internal\/(http|net|stream_base_commons|http2|dns))/.test(u)) return "HTTP send"
  if (/\/telemetry\/internal\/otlp\/(transport|response)\./.test(u)) return "HTTP send"
  if (/otlp-exporter-base|otlp-grpc-exporter-base|@grpc\/grpc-js/.test(u)) return "HTTP send"
  if (/\/telemetry\/internal\/otlp\/|otlp-transformer|protobufjs/.test(u)) return "OTLP encode"
  // Our modules: src/ (a checkout run from source), dist/ (tsc's output) or dist.tmp-<pid>/ (the bundle's origin).
  if (/\/(src|dist)(\.tmp-\d+)?\/kernel\//.test(u)) return "kernel binding/ring"
  if (/\/(src|dist)(\.tmp-\d+)?\/probe\//.test(u)) return "decode (probe runner, layouts)"
  if (/\/(src|dist)(\.tmp-\d+)?\/instrumentations\//.test(u)) return "instrumentation signals"
  if (/\/(src|dist)(\.tmp-\d+)?\/telemetry\/|@opentelemetry\//.test(u)) return "telemetry/metrics"
  if (/\/node_modules\/(effect|@effect)\//.test(u)) return "Effect runtime"
  if (u.startsWith("node:")) return undefined // Buffer, timers, streams, ...: the caller's stage
  return "other"
}

export interface Summary {
  /** Samples in the window, idle excluded, and the CPU they stand for (ms). */
  readonly samples: number
  readonly cpuMs: number
  readonly windowMs: number
  readonly byStage: ReadonlyArray<{ readonly stage: Stage; readonly ms: number; readonly share: number }>
  readonly top: ReadonlyArray<{ readonly fn: string; readonly ms: number; readonly share: number }>
}

/** Summarises the samples taken in [fromUs, toUs] (process.hrtime µs); the whole profile when the window is absent. */
export const summarize = (file: string, window?: { readonly fromUs: number; readonly toUs: number }): Summary => {
  const p = JSON.parse(fs.readFileSync(file, "utf8")) as Profile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const stageCache = new Map<number, Stage | "idle">()
  const stageOfNode = (id: number): Stage | "idle" => {
    const cached = stageCache.get(id)
    if (cached !== undefined) return cached
    const own = stageOf(byId.get(id)!.callFrame)
    const up = parent.get(id)
    const s = own ?? (up === undefined ? "other" : stageOfNode(up))
    stageCache.set(id, s)
    return s
  }
  const stageMs = new Map<Stage, number>()
  const selfMs = new Map<string, number>()
  let t = p.startTime
  let cpuMs = 0
  let samples = 0
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!
    if (window !== undefined && (t < window.fromUs || t > window.toUs)) continue
    // A sample stands for the time until the next one (the last: the one before it).
    const ms = (p.timeDeltas[i + 1] ?? p.timeDeltas[i]!) / 1000
    const id = p.samples[i]!
    const stage = stageOfNode(id)
    if (stage === "idle") continue
    samples++
    cpuMs += ms
    stageMs.set(stage, (stageMs.get(stage) ?? 0) + ms)
    const f = byId.get(id)!.callFrame
    const src = sourceOf(f.url, f.lineNumber).replace(/^.*?\/(node_modules|src|dist)(\.tmp-\d+)?\//, "$1/")
    // A bundle's line is in the bundle, not in the module named: both are given.
    const bundled = f.url.endsWith(".mjs") && src !== f.url
    const line = f.lineNumber + 1
    const where = f.url === "" ? "native" : bundled ? `${src} (${f.url.split("/").pop()}:${line})` : `${src}:${line}`
    const key = `${f.functionName || "(anonymous)"} ${where}`
    selfMs.set(key, (selfMs.get(key) ?? 0) + ms)
  }
  const windowMs = window === undefined ? (p.endTime - p.startTime) / 1000 : (window.toUs - window.fromUs) / 1000
  return {
    samples,
    cpuMs,
    windowMs,
    byStage: stages.map((stage) => ({
      stage,
      ms: stageMs.get(stage) ?? 0,
      share: (stageMs.get(stage) ?? 0) / (cpuMs || 1)
    })),
    top: [...selfMs].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([fn, ms]) => ({ fn, ms, share: ms / (cpuMs || 1) }))
  }
}

/** The profile window's bounds, for checking that a load window falls inside it. */
export const bounds = (file: string): { readonly startUs: number; readonly endUs: number } => {
  const p = JSON.parse(fs.readFileSync(file, "utf8")) as Profile
  return { startUs: p.startTime, endUs: p.endTime }
}
