/**
 * What the reliability suite runs: the churn target (test/fixtures/go/churn) and the keep-alive load generator
 * (bench/load), both built once into test/.cache, plus helpers to watch the agent from outside.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import { root } from "../e2e/harness.ts"

const cache = path.join(root, "test", ".cache", "reliability")

const build = (name: string, dir: string): string => {
  const out = path.join(cache, name)
  const sources = Math.max(...fs.readdirSync(dir).map((f) => fs.statSync(path.join(dir, f)).mtimeMs))
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs > sources) return out
  fs.mkdirSync(cache, { recursive: true })
  const tmp = `${out}.${process.pid}.tmp`
  execFileSync("go", ["build", "-o", tmp, "."], {
    cwd: dir,
    env: { ...process.env, GOFLAGS: "-mod=mod", GOTOOLCHAIN: process.env["GOTOOLCHAIN"] ?? "local" },
    stdio: ["ignore", "ignore", "pipe"],
    timeout: 600_000
  })
  fs.renameSync(tmp, out)
  return out
}

/** The churn target: `churn -url U -n N -delay D -live L`. */
export const buildChurn = (): string => build("churn", path.join(root, "test", "fixtures", "go", "churn"))

/** The load generator: `load -url U -n N -c C` prints one JSON line. */
export const buildLoad = (): string => build("load", path.join(root, "bench", "load"))

/** Resident set size of a process, in bytes (0 once it is gone). */
export const rss = (pid: number): number => {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return m === null ? 0 : Number(m[1]) * 1024
  } catch {
    return 0
  }
}

/** How many BPF links a process holds (fds whose fdinfo has a link_id). */
export const linkCount = (pid: number): number => {
  let n = 0
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (!fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("anon_inode:bpf")) continue
      if (/^link_id:/m.test(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))) n++
    } catch {
      // the fd closed while we looked
    }
  }
  return n
}

/** Polls `f` every 10 ms until it holds; fails with `what` after `timeoutMs`. Returns the elapsed milliseconds. */
export const waitUntil = (what: string, f: () => boolean, timeoutMs = 30_000) =>
  Effect.gen(function*() {
    const start = performance.now()
    while (!f()) {
      if (performance.now() - start > timeoutMs) return yield* Effect.die(new Error(`timed out: ${what}`))
      yield* Effect.sleep("10 millis")
    }
    return performance.now() - start
  })

/** Every "pid N: attached" line the agent printed, as pids. */
export const attachedPids = (stderr: string): Set<number> =>
  new Set([...stderr.matchAll(/pid (\d+): attached \d+ probe\(s\)/g)].map((m) => Number(m[1])))

/** The numbers of the agent's final telemetry line for spans: `spans N · otlp URL: E exported, … D dropped, F failed`. */
export const spanAccounting = (stderr: string) => {
  const lines = [...stderr.matchAll(/^probescope: spans (\d+).*?: (\d+) exported, (\d+) queued, (?:(\d+) in flight, )?(\d+) dropped, (\d+) failed/gm)]
  const last = lines.at(-1)
  if (last === undefined) throw new Error(`no span accounting line in:\n${stderr}`)
  return {
    sent: Number(last[1]),
    exported: Number(last[2]),
    queued: Number(last[3]),
    inFlight: Number(last[4] ?? 0),
    dropped: Number(last[5]),
    failed: Number(last[6])
  }
}
