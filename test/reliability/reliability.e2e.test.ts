/**
 * The reliability suite: the agent (`bin/probescope run`) against real Go processes that come and go, exporting to a
 * real OpenTelemetry Collector (test/collector) that the tests take down and black-hole. Every figure the suite
 * checks is a bound from the many-processes issue; the measured values are printed so the docs can quote them.
 *
 * `RELIABILITY_OUTAGE_SECONDS` (default 10) sets the collector outage; `npm run soak` runs it with 60 (after a 10-minute footprint soak).
 */
import { assert, describe, it } from "@effect/vitest"
import * as path from "node:path"
import { Effect } from "effect"
import { beforeAll } from "vitest"
import * as Collector from "../collector/Collector.ts"
import { agentEnv, assertReleased, attachedLine, bpfIdsOf, cli, spawnProc, startService } from "../e2e/harness.ts"
import { buildExample } from "../instrumentations/fixtures.ts"
import { attachedPids, buildChurn, buildLoad, linkCount, rss, spanAccounting, waitUntil } from "./fixtures.ts"

const GO = "1.26.8"
const OUTAGE_SECONDS = Number(process.env["RELIABILITY_OUTAGE_SECONDS"] ?? "10")

let churn = ""
let load = ""
let frontendExe = ""
let backendExe = ""

beforeAll(async () => {
  churn = buildChurn()
  load = buildLoad()
  const dir = buildExample(GO)
  frontendExe = path.join(dir, "frontend")
  backendExe = path.join(dir, "backend")
  await Effect.runPromise(Collector.build)
}, 2_700_000)

/** A figure for the closing note and docs/benchmarks.md. */
const report = (what: string, value: string) => Effect.sync(() => console.log(`[reliability] ${what}: ${value}`))

/** The agent exporting traces to the collector (no metrics unless asked), started and ready. */
const startAgent = (args: ReadonlyArray<string>, collector: Collector.Collector, extra: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const agent = yield* spawnProc(cli, ["run", ...args], agentEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
      OTEL_METRICS_EXPORTER: "none",
      OTEL_BSP_SCHEDULE_DELAY: "200",
      ...extra
    }))
    yield* agent.line("stderr", /^probescope: ready/m, "120 seconds")
    return agent
  })

/** Waits until the agent has said every one of `procs` is attached. */
const waitAttached = (agent: { readonly stderr: () => string }, procs: ReadonlyArray<{ readonly pid: number }>) =>
  waitUntil("every process attached", () => {
    const attached = attachedPids(agent.stderr())
    return procs.every((p) => attached.has(p.pid))
  })

/** The agent on churn and the example backend (both by executable), the backend serving: churn's requests go there. */
const churnAgainstBackend = Effect.gen(function*() {
  const collector = yield* Collector.make()
  const agent = yield* startAgent(["--exe", churn, "--exe", backendExe], collector)
  const backend = yield* startService(backendExe, [])
  yield* agent.line("stderr", attachedLine(backend.pid))
  return { collector, url: `http://${backend.addr}/users/1` }
})

/** Runs one churn process to its end and returns its pid. */
const runChurn = (args: ReadonlyArray<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const proc = yield* spawnProc(churn, args)
    const exit = yield* proc.exit("30 seconds")
    assert.strictEqual(exit.code, 0, `churn ${args.join(" ")}: ${proc.stderr()}`)
    return proc.pid
  }))

/** Client spans the collector passed on, by the pid of the process that made them. */
const clientSpansByPid = (collector: Collector.Collector) =>
  Effect.map(collector.receiver.spans, (spans) => {
    const byPid = new Map<number, number>()
    for (const s of spans) {
      if (s.kind !== "SPAN_KIND_CLIENT") continue
      const pid = Number(s.resource["process.pid"])
      byPid.set(pid, (byPid.get(pid) ?? 0) + 1)
    }
    return byPid
  })

describe("reliability", () => {
  it.live("30 processes of one executable: attached within 1 s, links once per file, detached within 1 s", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const agent = yield* startAgent(["--exe", churn], collector, { PROBESCOPE_LINK_GRACE_MS: "0" })
      const baseline = linkCount(agent.pid)
      const start = performance.now()
      const procs = yield* Effect.forEach(Array.from({ length: 30 }), () => spawnProc(churn, ["-live", "120s"]))
      yield* waitAttached(agent, procs)
      const attachMs = performance.now() - start
      // One link per program for the file, whatever the number of processes.
      const links = linkCount(agent.pid) - baseline
      assert.isAtMost(links, 8, "links for 30 processes of one executable")
      yield* Effect.forEach(procs, (p) => Effect.sync(() => p.child.kill("SIGKILL")), { discard: true })
      const detachMs = yield* waitUntil("the file's links closed", () => linkCount(agent.pid) === baseline)
      yield* report("30 processes, executable selection", `attach ${attachMs.toFixed(0)} ms, ${links} links, ` +
        `detach ${detachMs.toFixed(0)} ms`)
      assert.isAtMost(attachMs, 1000, "attach all")
      assert.isAtMost(detachMs, 1000, "detach all")
    }).pipe(Effect.scoped))

  it.live("30 processes selected by pid: per-process links, attached and detached within 1 s, agent then stops", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const procs = yield* Effect.forEach(Array.from({ length: 30 }), () => spawnProc(churn, ["-live", "120s"]))
      const start = performance.now()
      const agent = yield* startAgent(procs.flatMap((p) => ["--pid", String(p.pid)]), collector)
      // `ready` comes once the 30 processes selected at start are attached, so what follows finds them attached.
      const readyMs = performance.now() - start
      assert.match(agent.stderr(), /^probescope: ready: .*; 30 process\(es\) attached$/m)
      yield* waitAttached(agent, procs)
      const attachMs = performance.now() - start - readyMs
      const ours = bpfIdsOf(agent.pid)
      yield* Effect.forEach(procs, (p) => Effect.sync(() => p.child.kill("SIGKILL")), { discard: true })
      const t0 = performance.now()
      const exit = yield* agent.exit("30 seconds")
      const detachMs = performance.now() - t0
      assert.strictEqual(exit.code, 0, agent.stderr())
      assert.match(agent.stderr(), /every selected process has exited/)
      yield* assertReleased(ours)
      yield* report("30 processes, pid selection", `${ours.links.size} links held, attach ${attachMs.toFixed(0)} ms ` +
        `after ready, detach and exit ${detachMs.toFixed(0)} ms`)
      assert.isAtMost(attachMs, 1000, "attach all")
    }).pipe(Effect.scoped))

  it.live("SIGINT with 30 processes attached by pid: exits within 1 s, nothing left in the kernel", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const procs = yield* Effect.forEach(Array.from({ length: 30 }), () => spawnProc(churn, ["-live", "120s"]))
      const agent = yield* startAgent(procs.flatMap((p) => ["--pid", String(p.pid)]), collector)
      yield* waitAttached(agent, procs)
      const ours = bpfIdsOf(agent.pid)
      assert.isAtLeast(ours.links.size, 60, "per-process links")
      const t0 = performance.now()
      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      const ms = performance.now() - t0
      yield* report("SIGINT with 30 processes attached by pid", `${ours.links.size} links, exit after ${ms.toFixed(0)} ms`)
      assert.strictEqual(exit.code, 0, agent.stderr())
      yield* assertReleased(ours)
      assert.isAtMost(ms, 1000)
    }).pipe(Effect.scoped))

  it.live("a restarted process of an attached executable is traced from its first instruction", () =>
    Effect.gen(function*() {
      const { collector, url } = yield* churnAgainstBackend
      const first = yield* runChurn(["-url", url, "-n", "1", "-delay", "300ms"])
      // No wait at all after exec: the file's per-target entry serves it before the agent has seen it start.
      const second = yield* runChurn(["-url", url, "-n", "1", "-delay", "0s"])
      let byPid = yield* clientSpansByPid(collector)
      for (let i = 0; i < 150 && !(byPid.has(first) && byPid.has(second)); i++) {
        yield* Effect.sleep("100 millis")
        byPid = yield* clientSpansByPid(collector)
      }
      assert.strictEqual(byPid.get(first), 1, "the first process's request")
      assert.strictEqual(byPid.get(second), 1, "the restarted process's request, right after exec")
    }).pipe(Effect.scoped))

  it.live("200 processes living 50 ms, one request each: at least 95 % traced", () =>
    Effect.gen(function*() {
      const { collector, url } = yield* churnAgainstBackend
      const pids = yield* Effect.forEach(
        Array.from({ length: 200 }),
        () => runChurn(["-url", url, "-n", "1", "-delay", "25ms", "-live", "20ms"]),
        { concurrency: 4 }
      )
      // Everything sent has arrived once the count stops growing for a few export intervals.
      let last = -1
      let traced = 0
      for (let stable = 0; stable < 5;) {
        yield* Effect.sleep("300 millis")
        const byPid = yield* clientSpansByPid(collector)
        traced = pids.filter((p) => byPid.get(p) === 1).length
        stable = traced === last ? stable + 1 : 0
        last = traced
      }
      yield* report("200 short-lived processes", `${traced} traced`)
      assert.isAtLeast(traced, 190)
    }).pipe(Effect.scoped))

  it.live("a target exiting during a burst on another: no record dropped", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const agent = yield* startAgent(
        ["--exe", frontendExe, "--exe", backendExe, "--exe", churn],
        collector,
        { PROBESCOPE_LINK_GRACE_MS: "0" }
      )
      const backend = yield* startService(backendExe, [])
      const frontend = yield* startService(frontendExe, ["-backend", `http://${backend.addr}`])
      const idle = yield* spawnProc(churn, ["-live", "120s"])
      yield* agent.line("stderr", attachedLine(frontend.pid))
      yield* agent.line("stderr", attachedLine(idle.pid))
      // Straight at the backend: one span per request, the highest record rate this machine's loopback gives.
      const burst = yield* spawnProc(load, ["-url", `http://${backend.addr}/users/1`, "-n", "60000", "-c", "8"])
      yield* Effect.sleep("1 second")
      // The idle target's links close while the burst runs: the rings must keep draining.
      idle.child.kill("SIGKILL")
      const done = yield* burst.exit("120 seconds")
      assert.strictEqual(done.code, 0, burst.stderr())
      const result = JSON.parse(burst.stdout()) as { rps: number; errors: number }
      assert.strictEqual(result.errors, 0)
      agent.child.kill("SIGINT")
      yield* agent.exit("30 seconds")
      const stderr = agent.stderr()
      const dropped = [...stderr.matchAll(/^probescope: (nethttp_\w+): .*$/gm)].map((m) => m[0])
      yield* report("burst", `${result.rps.toFixed(0)} req/s; ${dropped.join(" | ")}`)
      assert.isAtLeast(dropped.length, 2)
      for (const line of dropped) assert.match(line, / 0 dropped/, line)
    }).pipe(Effect.scoped))

  it.live(`collector down ${OUTAGE_SECONDS} s under load: every span accounted for, memory bounded, export resumes`, () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const agent = yield* startAgent(["--exe", backendExe], collector)
      const backend = yield* startService(backendExe, [])
      yield* agent.line("stderr", attachedLine(backend.pid))
      const rate = 300
      const seconds = OUTAGE_SECONDS + 12
      const traffic = yield* spawnProc(load, [
        "-url", `http://${backend.addr}/users/1`, "-n", String(rate * seconds), "-c", "2", "-rate", String(rate)
      ])
      yield* Effect.sleep("2 seconds")
      const before = rss(agent.pid)
      yield* collector.stop
      let peak = before
      for (let i = 0; i < OUTAGE_SECONDS * 4; i++) {
        yield* Effect.sleep("250 millis")
        peak = Math.max(peak, rss(agent.pid))
      }
      const received = (yield* collector.receiver.spans).length
      yield* collector.start
      const resumeMs = yield* Effect.gen(function*() {
        const t0 = performance.now()
        while ((yield* collector.receiver.spans).length === received) {
          if (performance.now() - t0 > 15_000) return Infinity
          yield* Effect.sleep("50 millis")
        }
        return performance.now() - t0
      })
      yield* traffic.exit("120 seconds")
      yield* Effect.sleep("2 seconds")
      const after = rss(agent.pid)
      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      const counts = spanAccounting(agent.stderr())
      yield* report(`collector down ${OUTAGE_SECONDS} s at ${rate} req/s`, `RSS ${mb(before)} -> peak ${mb(peak)} -> ` +
        `${mb(after)} MiB; resumed after ${resumeMs.toFixed(0)} ms; ${JSON.stringify(counts)}; exit ${exit.code}`)
      assert.strictEqual(counts.sent, counts.exported + counts.dropped + counts.failed, JSON.stringify(counts))
      assert.strictEqual(counts.queued + counts.inFlight, 0)
      assert.isAbove(counts.dropped + counts.failed, 0, "the outage lost something")
      assert.isAtMost(resumeMs, 5000, "export resumes")
      assert.isAtMost(peak - before, 64 * 1024 * 1024, "RSS growth during the outage")
      // Spans were lost, so the exit code says so.
      assert.notStrictEqual(exit.code, 0)
    }).pipe(Effect.scoped))

  it.live("shutdown with the collector black-holed ends within 5 s; a second SIGINT within 1 s; nothing left", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const backend = yield* startService(backendExe, [])
      // Traffic throughout, so there is always something queued for the collector that never answers.
      yield* spawnProc(load, ["-url", `http://${backend.addr}/users/1`, "-n", "100000", "-c", "2", "-rate", "200"])
      for (const second of [false, true]) {
        const agent = yield* startAgent(["--exe", backendExe], collector)
        yield* agent.line("stderr", attachedLine(backend.pid))
        const ours = bpfIdsOf(agent.pid)
        yield* collector.blackHole
        yield* Effect.sleep("1500 millis")
        const t0 = performance.now()
        agent.child.kill("SIGINT")
        let t1 = t0
        if (second) {
          yield* Effect.sleep("200 millis")
          t1 = performance.now()
          agent.child.kill("SIGINT")
        }
        yield* agent.exit("30 seconds")
        const ms = performance.now() - t1
        yield* report(second ? "second SIGINT to exit" : "SIGINT to exit, collector black-holed", `${ms.toFixed(0)} ms`)
        assert.isAtMost(ms, second ? 1000 : 5000)
        yield* assertReleased(ours)
        yield* collector.start
      }
    }).pipe(Effect.scoped))

  it.live("30 start/stop cycles of the agent under load: no failed or wrong response", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const backend = yield* startService(backendExe, [])
      const frontend = yield* startService(frontendExe, ["-backend", `http://${backend.addr}`])
      const traffic = yield* spawnProc(load, [
        "-url", `http://${frontend.addr}/users/7`, "-n", "1000000", "-c", "2", "-rate", "200", "-expect", "\"user-7\""
      ])
      for (let cycle = 0; cycle < 30; cycle++) {
        const agent = yield* startAgent(["--exe", frontendExe, "--exe", backendExe], collector)
        yield* agent.line("stderr", attachedLine(frontend.pid))
        yield* agent.line("stderr", attachedLine(backend.pid))
        agent.child.kill("SIGINT")
        const exit = yield* agent.exit("30 seconds")
        assert.strictEqual(exit.code, 0, `cycle ${cycle}: ${agent.stderr()}`)
      }
      // SIGINT makes the generator stop and print the totals of what it sent.
      traffic.child.kill("SIGINT")
      yield* traffic.exit("30 seconds")
      const result = JSON.parse(traffic.stdout()) as { requests: number; errors: number }
      yield* report("30 agent start/stop cycles under load", `${result.requests} requests, ${result.errors} errors`)
      assert.isAbove(result.requests, 1000)
      assert.strictEqual(result.errors, 0)
    }).pipe(Effect.scoped))
})

const mb = (bytes: number) => (bytes / (1 << 20)).toFixed(0)
