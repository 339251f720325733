/**
 * How soon discovery reports a new process, and how soon it reports its exit: the time from `spawn()` returning to
 * the `Started` event, and from the child's exit (as Node sees it) to the `Exited` event, over many short-lived
 * processes of a private executable. Ours (exec/exit tracepoints through the batched ring buffer) against what a
 * scan-only agent gets, measured in the same run: a /proc poll every 100 ms, which sees a process late and misses
 * the short-lived ones entirely. Needs root.
 *
 *   node_modules/.bin/node bench/discovery.ts
 */
import { Effect, Layer, Stream } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Discovery from "../src/discovery/Discovery.ts"
import { scan } from "../src/discovery/ProcScan.ts"
import * as BpfLive from "../src/kernel/BpfLive.ts"

const N = 200
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-bench-discovery-"))
const exe = path.join(dir, "short")
fs.copyFileSync("/usr/bin/sleep", exe)
fs.chmodSync(exe, 0o755)

const percentile = (xs: Array<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

const program = Effect.gen(function*() {
  const spawnedAt = new Map<number, number>()
  const exitedAt = new Map<number, number>()
  const startLatency: Array<number> = []
  const exitLatency: Array<number> = []
  const events = yield* Discovery.subscribe({ pids: [], exes: [exe] })
  let seen = 0
  // The scan-only alternative, polling alongside.
  const pollLatency: Array<number> = []
  const polled = new Set<number>()
  const poller = setInterval(() => {
    const now = performance.now()
    for (const p of Effect.runSync(scan)) {
      if (p.exe !== exe || polled.has(p.pid)) continue
      polled.add(p.pid)
      const t = spawnedAt.get(p.pid)
      if (t !== undefined) pollLatency.push(now - t)
    }
  }, 100)
  const consumer = yield* events.pipe(
    Stream.runForEach((e) =>
      Effect.sync(() => {
        const now = performance.now()
        if (e._tag === "Started") {
          const t = spawnedAt.get(e.pid)
          if (t !== undefined) startLatency.push(now - t)
        } else {
          const t = exitedAt.get(e.pid)
          // Node may learn of the exit after the tracepoint fired: then the latency is ~0, clamp it.
          if (t !== undefined) exitLatency.push(Math.max(0, now - t))
          seen++
        }
      })
    ),
    Effect.forkScoped
  )
  for (let i = 0; i < N; i++) {
    yield* Effect.promise(() =>
      new Promise<void>((resolve) => {
        const child = spawn(exe, ["0.01"], { stdio: "ignore" })
        spawnedAt.set(child.pid!, performance.now())
        child.once("exit", () => {
          exitedAt.set(child.pid!, performance.now())
          resolve()
        })
      })
    )
  }
  while (seen < N) yield* Effect.sleep("20 millis")
  clearInterval(poller)
  void consumer
  return { startLatency, exitLatency, pollLatency }
})

const { exitLatency, pollLatency, startLatency } = await Effect.runPromise(
  Effect.scoped(program).pipe(Effect.provide(Discovery.layer.pipe(Layer.provide(BpfLive.layer))))
)
fs.rmSync(dir, { recursive: true, force: true })

const row = (name: string, xs: Array<number>) =>
  `| ${name.padEnd(38)} | ${xs.length.toString().padStart(5)} | ${
    xs.length === 0 ? "      -" : percentile(xs, 50).toFixed(2).padStart(7)
  } | ${xs.length === 0 ? "      -" : percentile(xs, 99).toFixed(2).padStart(7)} |`
console.log(`discovery latency over ${N} short-lived processes (10 ms each), in ms`)
console.log("| event                                  |  seen |     p50 |     p99 |")
console.log("| -------------------------------------- | ----: | ------: | ------: |")
console.log(row("ours: spawn() → Started", startLatency))
console.log(row("ours: exit seen by Node → Exited", exitLatency))
console.log(row("/proc poll every 100 ms: spawn → seen", pollLatency))
console.log(
  `ours saw ${startLatency.length}/${N} starts, the poll ${pollLatency.length}/${N}; ` +
    `p50 start latency ratio (poll / ours): ${
      pollLatency.length === 0 ? "∞" : (percentile(pollLatency, 50) / percentile(startLatency, 50)).toFixed(0)
    }×`
)
