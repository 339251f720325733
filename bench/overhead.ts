/**
 * What the agent costs a real Go service: the example service (examples/go-service, frontend → backend on loopback)
 * under a keep-alive load from a separate Go process (bench/load), in rounds. Each round measures the service without
 * the agent, then with `bin/probescope run --exe frontend --exe backend` attached in each mode, interleaved so the
 * machine's noise falls on all of them alike:
 *   - `always_off`: the floor. Probes attached, the sampler drops every span in the kernel, nothing is submitted.
 *   - `export none`: every span read, decoded and built, none exported.
 *   - `otlp <protocol>`: traces and metrics (every second) exported to a local OTLP sink (bench/internal/sink.ts, a
 *     process of its own) that counts the spans it gets: the run fails unless it got every span the requests made.
 * Every request makes three spans: the frontend's server span, its client span and the backend's server span.
 * Target cost is given against the floor (per-round ratios' median); the agent's CPU per span is its CPU while the
 * load ran, its idle rate taken off, over the spans the requests made: with the warm-up requests (the agent's first
 * requests, when the JIT compiles the path: a cost per start more than per span), and after them (the goal's figure).
 * The figure after them is split by thread (the main, event-loop thread against V8's and libuv's helpers) with the main
 * thread's wakeups and preemptions per second over that window (from the load's start to 1.5 s after its end).
 *
 *   BENCH_PROTOCOLS=http/protobuf,grpc,http/json (the default: all three) picks the export modes.
 *   BENCH_AGENT_WARMUP=<requests> (default 15000) an attached agent handles before the measured requests.
 *   BENCH_BEFORE=<another checkout's bin/probescope, built> adds that build, OTLP over the first protocol, as a mode.
 *
 * Issue #12's goals go to the results file (bench/internal/goals.ts): agent CPU per span per protocol (against #12's
 * ~20 µs), and target CPU per request and latency p99 against the floor (≤ 1.05x, ≤ 1.15x) per protocol.
 *
 *   node_modules/.bin/node bench/overhead.ts [requests, default 3000] [connections, default 1] [rounds, default 3]
 *
 * Root is needed (uprobes). The service is built with Go $BENCH_GO_VERSION (default 1.26.8, fetched through
 * GOTOOLCHAIN when it is not the local one). Figures are from one run on whatever machine this is: read ratios, not
 * absolutes.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as readline from "node:readline"
import { buildExample } from "../test/instrumentations/fixtures.ts"
import * as Goals from "./internal/goals.ts"
import {
  buildLoad,
  clockTicks,
  cpuNs,
  cpuRate,
  cpuSeconds,
  type Load,
  median,
  privateCopy,
  rssMiB,
  sleep,
  waitForLine
} from "./internal/proc.ts"
import * as Sink from "./internal/sink.ts"

const root = path.resolve(import.meta.dirname, "..")
const requests = Number(process.argv[2] ?? 3000)
const connections = Number(process.argv[3] ?? 1)
/** Without/with pairs; the VM is noisy, so the table shows medians and the per-round ratios show the spread. */
const rounds = Number(process.argv[4] ?? 3)
/** The agent's output lines kept for the report of a run that lost spans. */
const TAIL_LINES = 30
const warmup = Math.min(500, requests)
/**
 * Requests a newly attached agent handles before the measured ones (BENCH_AGENT_WARMUP): V8 compiles the span path
 * to optimised code only after thousands of spans, and an agent's cost per span over its first ~20 000 spans is
 * 2-4x its steady cost (one backend, 20 000 vs 100 000 spans: 20-22 vs 8.3 µs per span). They count in the
 * figure "with warm-up", not in the steady one.
 */
const agentWarmup = Number(process.env["BENCH_AGENT_WARMUP"] ?? 15_000)
/** The frontend's server and client spans and the backend's server span. */
const SPANS_PER_REQUEST = 3

/**
 * The agent's CPU by thread, and its main thread's context switches: the JS thread (the event loop: drains, spans,
 * export) apart from V8's helper threads (parallel GC, concurrent compilation) and libuv's; voluntary switches are
 * the event loop going to sleep (each is one wakeup later), involuntary ones are the thread preempted while it
 * worked (on a 2-vCPU machine, by the service and the load generator).
 */
interface Threads {
  readonly mainNs: number
  readonly otherNs: number
  readonly wakeups: number
  readonly preempted: number
}

const threads = (pid: number): Threads => {
  let mainNs = 0
  let otherNs = 0
  let wakeups = 0
  let preempted = 0
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const ns = Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0])
      if (tid !== String(pid)) {
        otherNs += ns
        continue
      }
      mainNs += ns
      const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8")
      wakeups += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0)
      preempted += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0)
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return { mainNs, otherNs, wakeups, preempted }
}

const children: Array<ChildProcess> = []
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
})

/** Private copies: `--exe` selects every process of a file, another run's included (bench/internal/proc.ts). */
const build = () => {
  const dir = buildExample(process.env["BENCH_GO_VERSION"] ?? "1.26.8")
  return {
    frontend: privateCopy(path.join(dir, "frontend")),
    backend: privateCopy(path.join(dir, "backend")),
    load: buildLoad()
  }
}

const runLoad = (load: string, url: string, n: number): Load =>
  JSON.parse(execFileSync(load, ["-url", url, "-n", String(n), "-c", String(connections)]).toString()) as Load

/** One way of running the agent, measured in every round against the same service. */
interface Mode {
  readonly name: string
  readonly env: (sink: Sink.Sink) => Record<string, string>
  /** Spans it sends to the sink (the check that nothing was lost). */
  readonly exports: boolean
  /** Another build's bin/probescope (BENCH_BEFORE), else this checkout's. */
  readonly bin?: string
}

const protocols = (process.env["BENCH_PROTOCOLS"] ?? "http/protobuf,grpc,http/json").split(",").filter((p) => p !== "")

const modes: ReadonlyArray<Mode> = [
  // The floor: every probe attached and running in the kernel, the sampler drops every span (nothing submitted).
  {
    name: "always_off",
    env: () => ({ OTEL_TRACES_SAMPLER: "always_off", OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none" }),
    exports: false
  },
  // Every span decoded and built, none exported: the export stage's share is the difference to the next modes.
  { name: "export none", env: () => ({ OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none" }), exports: false },
  // The agent as users run it: traces and the probes' metrics exported over OTLP to a local sink.
  ...protocols.map((protocol): Mode => ({
    name: `otlp ${protocol}`,
    env: (sink) => ({
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_METRICS_EXPORTER: "otlp",
      OTEL_METRIC_EXPORT_INTERVAL: "1000",
      OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
      OTEL_EXPORTER_OTLP_ENDPOINT: protocol === "grpc" ? sink.grpcUrl : sink.httpUrl
    }),
    exports: true
  })),
  // BENCH_BEFORE=<another checkout's bin/probescope, built>: that build too, OTLP over the first protocol, in the same
  // rounds, so "before → after" is a ratio of one run rather than of two runs hours apart.
  ...(process.env["BENCH_BEFORE"] === undefined ? [] : [{
    name: `before: otlp ${protocols[0] ?? "http/protobuf"}`,
    bin: process.env["BENCH_BEFORE"],
    env: (sink: Sink.Sink) => ({
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_METRICS_EXPORTER: "otlp",
      OTEL_METRIC_EXPORT_INTERVAL: "1000",
      OTEL_EXPORTER_OTLP_PROTOCOL: protocols[0] ?? "http/protobuf",
      OTEL_EXPORTER_OTLP_ENDPOINT: protocols[0] === "grpc" ? sink.grpcUrl : sink.httpUrl
    }),
    exports: true
  }])
]

interface Attached {
  readonly measured: Measured
  /** Agent CPU per request handled while attached (idle rate taken off), seconds: the warm-up's requests included. */
  readonly agentCpuPerRequest: number
  /**
   * The same from the end of the warm-up on (the measured requests and their export only), at schedstat's
   * resolution: the agent's steady cost, without its first requests' (the JIT compiling the path, first batches).
   */
  readonly agentSteadyCpuPerRequest: number
  readonly agentIdlePerSecond: number
  /** Over the measured requests (after the warm-up): the agent's CPU by thread and its main thread's switches. */
  readonly steadyThreads: Threads
  readonly steadySeconds: number
  readonly rssIdle: number
  readonly rssLoaded: number
  readonly exitCode: number | null
  /** Spans the sink counted for this run, and the spans the requests made. */
  readonly received: number
  readonly expected: number
}

interface Round {
  readonly without: Measured
  readonly modes: ReadonlyArray<Attached>
}

interface Measured {
  readonly load: Load
  readonly serviceCpuPerRequest: number
}

const main = async () => {
  const bins = build()
  const sink = await Sink.start()
  process.on("exit", sink.stop)
  const backend = spawn(bins.backend, ["-addr", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] })
  children.push(backend)
  const backendAddr = (await waitForLine(backend, ["stdout"], /^listening on (.+)$/, 10_000))[1]
  const frontend = spawn(bins.frontend, ["-addr", "127.0.0.1:0", "-backend", `http://${backendAddr}`], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  children.push(frontend)
  const frontendAddr = (await waitForLine(frontend, ["stdout"], /^listening on (.+)$/, 10_000))[1]
  const url = `http://${frontendAddr}/users/7`
  const services = [backend.pid!, frontend.pid!]
  const serviceCpu = () => services.reduce((t, p) => t + cpuSeconds(p), 0)

  /** `warmed` runs between the `warm` warm-up requests and the measured requests. */
  const measure = (warm = warmup, warmed: () => void = () => {}): Measured => {
    runLoad(bins.load, url, warm) // connections, goroutines, caches; an attached agent's JIT
    warmed()
    const cpu0 = serviceCpu()
    const load = runLoad(bins.load, url, requests)
    return { load, serviceCpuPerRequest: (serviceCpu() - cpu0) / requests }
  }

  const startAgent = async (mode: Mode) => {
    const agent = spawn(mode.bin ?? path.join(root, "bin", "probescope"), ["run", "--exe", bins.frontend, "--exe", bins.backend], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, OTEL_BSP_SCHEDULE_DELAY: "1000", ...mode.env(sink) }
    })
    children.push(agent)
    const attached = new Set<string>()
    const lines: Array<string> = []
    const bothAttached = new Promise<void>((resolve) => {
      for (const s of ["stdout", "stderr"] as const) {
        readline.createInterface({ input: agent[s]! }).on("line", (line) => {
          // The last lines are kept: an agent that lost spans says why in its exit summary.
          lines.push(line)
          if (lines.length > TAIL_LINES) lines.shift()
          const m = /pid (\d+): attached/.exec(line)
          if (m) attached.add(m[1]!)
          if (services.every((p) => attached.has(String(p)))) resolve()
        })
      }
    })
    const timeout = sleep(60_000).then(() => {
      throw new Error(`the agent (${mode.name}) did not attach to both services within 60 s`)
    })
    await Promise.race([bothAttached, timeout])
    return { agent, tail: () => lines.join("\n") }
  }

  const attached = async (mode: Mode): Promise<Attached> => {
    const received0 = await sink.spans()
    const { agent, tail } = await startAgent(mode)
    await sleep(1000) // start-up work settles before the agent's CPU is sampled
    const pid = agent.pid!
    const rssIdle = rssMiB(pid)
    // schedstat's nanoseconds: a clock tick (10 ms) is most of what an idle agent spends in a second.
    const idleBefore = await cpuRate(pid, 1000)
    const cpu0 = cpuSeconds(pid)
    const t0 = performance.now()
    let steadyNs0 = 0
    let steadyT0 = 0
    let threads0 = threads(pid)
    const measured = measure(warmup + agentWarmup, () => {
      steadyNs0 = cpuNs(pid)
      threads0 = threads(pid)
      steadyT0 = performance.now()
    })
    await sleep(1500) // the last records drain from the ring buffer and the last batch is exported
    const agentCpu = cpuSeconds(pid) - cpu0
    const steadyCpu = (cpuNs(pid) - steadyNs0) / 1e9
    const threads1 = threads(pid)
    const now = performance.now()
    const window = (now - t0) / 1000
    const steadyWindow = (now - steadyT0) / 1000
    const rssLoaded = rssMiB(pid)
    const idleAfter = await cpuRate(pid, 1000)
    // The smaller of the two is taken off: the second after start-up may still hold its work (JIT, collecting its
    // garbage), and taking that off the load's CPU would flatter the per-span figure.
    const agentIdlePerSecond = Math.min(idleBefore, idleAfter)
    const exit = new Promise<number | null>((resolve) => agent.once("exit", (c) => resolve(c)))
    agent.kill("SIGINT")
    const exitCode = await exit
    const received = (await sink.spans()) - received0
    const expected = mode.exports ? SPANS_PER_REQUEST * (requests + warmup + agentWarmup) : 0
    if (exitCode !== 0 || received !== expected) {
      console.error(`overhead: agent (${mode.name}) exited with ${exitCode}, the sink got ${received} of ${expected} ` +
        `spans; its last lines:\n${tail()}`)
    }
    return {
      measured,
      // The warm-up requests ran while attached too.
      agentCpuPerRequest: Math.max(0, agentCpu - agentIdlePerSecond * window) / (requests + warmup + agentWarmup),
      agentSteadyCpuPerRequest: Math.max(0, steadyCpu - agentIdlePerSecond * steadyWindow) / requests,
      agentIdlePerSecond,
      steadyThreads: {
        mainNs: threads1.mainNs - threads0.mainNs,
        otherNs: threads1.otherNs - threads0.otherNs,
        wakeups: threads1.wakeups - threads0.wakeups,
        preempted: threads1.preempted - threads0.preempted
      },
      steadySeconds: steadyWindow,
      rssIdle,
      rssLoaded,
      exitCode,
      received,
      expected
    }
  }

  const results: Array<Round> = []
  for (let i = 0; i < rounds; i++) {
    const without = measure()
    const attachedModes: Array<Attached> = []
    for (const mode of modes) attachedModes.push(await attached(mode))
    results.push({ without, modes: attachedModes })
  }
  backend.kill("SIGTERM")
  frontend.kill("SIGTERM")
  sink.stop()

  const m = (f: (r: Round) => number) => median(results.map(f))
  const floor = 0
  console.log(
    `overhead: ${requests} x GET /users/7 over ${connections} keep-alive connection(s), ${rounds} rounds ` +
      `(medians; modes interleaved in each round); frontend -> backend, ${SPANS_PER_REQUEST} spans per request`
  )
  const cols = ["no agent", ...modes.map((x) => x.name)]
  const line = (name: string, cells: ReadonlyArray<string>) =>
    console.log(`${name.padEnd(28)} ${cells.map((c) => c.padStart(20)).join("")}`)
  line("", cols)
  const serviceRow = (name: string, f: (x: Measured) => number, unit: string, digits = 0) => {
    const values = [m((r) => f(r.without)), ...modes.map((_, i) => m((r) => f(r.modes[i]!.measured)))]
    line(`${name} (${unit})`, values.map((v) => v.toFixed(digits)))
    // Target cost against the always_off floor measured in the same rounds (per-round ratios, then their median).
    line(
      `  vs always_off floor`,
      ["", ...modes.map((_, i) => `${m((r) => f(r.modes[i]!.measured) / f(r.modes[floor]!.measured)).toFixed(2)}x`)]
    )
  }
  serviceRow("throughput", (x) => x.load.rps, "req/s")
  serviceRow("latency p50", (x) => x.load.p50us, "µs")
  serviceRow("latency p99", (x) => x.load.p99us, "µs")
  serviceRow("service CPU/request", (x) => x.serviceCpuPerRequest * 1e6, "µs", 1)
  const agentRow = (name: string, f: (a: Attached) => number, digits = 1) =>
    line(name, ["", ...modes.map((_, i) => m((r) => f(r.modes[i]!)).toFixed(digits))])
  agentRow("agent CPU/request (µs)", (a) => a.agentCpuPerRequest * 1e6)
  agentRow("agent CPU/span (µs)", (a) => (a.agentCpuPerRequest * 1e6) / SPANS_PER_REQUEST, 2)
  agentRow("  after warm-up (µs)", (a) => (a.agentSteadyCpuPerRequest * 1e6) / SPANS_PER_REQUEST, 2)
  // Where the steady figure's CPU is (idle rate not taken off here): the event loop's thread, V8's and libuv's.
  agentRow("  main thread (µs/span)", (a) => a.steadyThreads.mainNs / 1e3 / (requests * SPANS_PER_REQUEST), 2)
  agentRow("  other threads (µs/span)", (a) => a.steadyThreads.otherNs / 1e3 / (requests * SPANS_PER_REQUEST), 2)
  agentRow("  main wakeups (/s)", (a) => a.steadyThreads.wakeups / a.steadySeconds, 0)
  agentRow("  main preempted (/s)", (a) => a.steadyThreads.preempted / a.steadySeconds, 0)
  agentRow("agent idle CPU (ms/s)", (a) => a.agentIdlePerSecond * 1000, 2)
  agentRow("agent RSS idle (MiB)", (a) => a.rssIdle, 0)
  agentRow("agent RSS loaded (MiB)", (a) => a.rssLoaded, 0)
  const errors = results.reduce((t, r) => t + r.without.load.errors + r.modes.reduce((u, a) => u + a.measured.load.errors, 0), 0)
  console.log(`errors: ${errors}; agent exit codes: ${results.flatMap((r) => r.modes.map((a) => a.exitCode)).join(" ")}`)
  console.log(`(idle CPU: the lower of 1 s before and 1 s after the load, schedstat; taken off the per-request ` +
    `figures; load CPU at clock-tick resolution, ${1000 / clockTicks} ms, with the ${warmup + agentWarmup} ` +
    `warm-up requests; ` +
    `"after warm-up": the ${requests} measured requests only, schedstat of the agent's threads)`)
  // #12's previous figure: ~20 µs of agent CPU per span with OTLP http/protobuf export on.
  const previousPerSpanUs = 20
  const beforeIndex = modes.findIndex((mode) => mode.bin !== undefined)
  // The goal's figure is the steady one (a cost per span, not per start); the one with the warm-up is in the note.
  const perSpanUs = (i: number) => m((r) => r.modes[i]!.agentSteadyCpuPerRequest * 1e6 / SPANS_PER_REQUEST)
  const coldPerSpanUs = (i: number) => m((r) => r.modes[i]!.agentCpuPerRequest * 1e6 / SPANS_PER_REQUEST)
  modes.forEach((mode, i) => {
    if (!mode.exports || mode.bin !== undefined) return
    const protocol = mode.name.replace(/^otlp /, "")
    // With BENCH_BEFORE, the first protocol's figure is given against that build measured in the same rounds.
    const baseline = beforeIndex >= 0 && protocol === protocols[0]
      ? { name: "before (BENCH_BEFORE, same run)", value: perSpanUs(beforeIndex) }
      : { name: "#12 before", value: previousPerSpanUs }
    const note = `${requests} requests x ${rounds} rounds, ${connections} connection(s), medians`
    Goals.record("overhead", {
      goal: `agent CPU per span, OTLP ${protocol}, metrics on`,
      figure: perSpanUs(i),
      unit: "µs",
      target: 2,
      baseline,
      note: `after ${warmup + agentWarmup} warm-up requests; with them (the JIT compiling the path, the first ` +
        `batches): ` +
        `${coldPerSpanUs(i).toFixed(2)} µs; ${note}`
    })
    Goals.record("overhead", {
      goal: `target CPU per request vs always_off floor, OTLP ${protocol}`,
      figure: m((r) => r.modes[i]!.measured.serviceCpuPerRequest / r.modes[floor]!.measured.serviceCpuPerRequest),
      unit: "x floor",
      target: 1.05,
      note: `${(m((r) => r.modes[i]!.measured.serviceCpuPerRequest) * 1e6).toFixed(1)} µs vs the floor's ` +
        `${(m((r) => r.modes[floor]!.measured.serviceCpuPerRequest) * 1e6).toFixed(1)} µs; ${note}`
    })
    Goals.record("overhead", {
      goal: `target latency p99 vs always_off floor, OTLP ${protocol}`,
      figure: m((r) => r.modes[i]!.measured.load.p99us / r.modes[floor]!.measured.load.p99us),
      unit: "x floor",
      target: 1.15,
      note: `${m((r) => r.modes[i]!.measured.load.p99us).toFixed(0)} µs vs the floor's ` +
        `${m((r) => r.modes[floor]!.measured.load.p99us).toFixed(0)} µs; ${note}`
    })
  })
  let lost = false
  modes.forEach((mode, i) => {
    if (!mode.exports) return
    const got = results.map((r) => `${r.modes[i]!.received}/${r.modes[i]!.expected}`).join(" ")
    console.log(`sink, ${mode.name}: spans received/made per round ${got}`)
    if (results.some((r) => r.modes[i]!.received !== r.modes[i]!.expected)) lost = true
  })
  if (lost) {
    console.error("overhead: the sink did not receive every span the requests made")
    process.exit(1)
  }
  process.exit(0)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
