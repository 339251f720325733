/**
 * The agent's footprint where issue #12 sets it: `bin/probescope run --exe backend` attached to ten processes of
 * examples/go-service's backend, driven at a steady 10k requests per second in total (one server span each) by the
 * Go load generator (bench/load, two keep-alive connections per process, paced), exporting traces and metrics over
 * OTLP http/protobuf to the counting sink (bench/internal/sink.ts). Prints:
 *   - agent RSS attached and idle, and steady under the load, against the 64 MiB goal and against a bare `node`
 *     process measured in the same run;
 *   - the floors under that RSS, in the same run: the smallest Effect program (bench/internal/effectFloor.ts,
 *     bundled as the CLI is) and the agent attached to nothing (every probe loaded, exporters off);
 *   - agent CPU while attached and idle (ms per second, over --idle-seconds with no load; schedstat, ns resolution);
 *   - agent CPU per span at the rate reached (its idle rate taken off);
 *   - spans lost: the sink's count against the requests made (the bench fails unless it is 0);
 *   - with --minutes N (or BENCH_SOAK_MINUTES): a soak under the same load, RSS every 10 s, the growth from the first
 *     minute to the last and the least-squares slope, over all samples and after the first minute (the goal's figure);
 *   - unless --no-profile: a V8 CPU profile of a second agent under the same load (its load window only, by the
 *     samples' timestamps): main-thread CPU by stage and the top 15 functions by self time.
 *   - unless --no-contention: the agent's own path in-process (bench/pipeline.ts, OTLP http/protobuf with metrics, at
 *     SCHED_IDLE as the agent runs), alone and then while the same load runs through an agent that submits nothing
 *     (sampler always_off: the services still take their uprobe traps): what the same JavaScript costs on a machine
 *     the traced services keep busy, against which the live agent's CPU per span is read.
 *   - with --saturate: the host filled up in the middle of each measured load (one busy loop per CPU and one more,
 *     nice 0, over its middle third): by then the agent gives way (SCHED_IDLE, src/cli/Priority.ts), and must take
 *     its priority back before its rings overflow; spans lost must still be 0. Prints each agent's "waited … for a
 *     CPU" lines. The sink runs at nice -10 then (a collector elsewhere is not starved by this host). The
 *     CPU-per-span figure of such a run is not the goal's.
 *
 *   - with BENCH_BEFORE=<another build's bin/probescope>, BENCH_NODE_FLAGS=<Node/V8 flags>[;<flags>...] and/or
 *     BENCH_AGENT_ENV=<NAME=value ...>[;<NAME=value ...>...]: the same figures for that build, or for this one started
 *     with each set of flags (PROBESCOPE_NODE_FLAGS; "none": without bin/probescope's default flags) or each set of
 *     environment variables, in the same run, and each one's ratio to this build's. Idle is
 *     measured with every agent attached at once, over the same one-second slices (whatever else wakes on this
 *     machine wakes them all alike); the load phases follow one agent at a time.
 *   - per agent: its main thread's wakeups per second while idle, and where its RSS is (anonymous, node binary, BPF
 *     maps, other; /proc/<pid>/smaps).
 *
 *   node_modules/.bin/node bench/footprint.ts [--rate 10000] [--processes 10] [--seconds 20] [--idle-seconds 10]
 *     [--minutes N] [--no-profile] [--profile-seconds 10] [--saturate] [--no-contention]
 *
 * Root is needed (uprobes). Figures are from one run on whatever machine this is; the rate reached is printed, since a
 * small machine may not drive 10k requests per second through ten Go servers, their probes and the agent at once.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { buildExample } from "../test/instrumentations/fixtures.ts"
import * as CpuProfile from "./internal/cpuprofile.ts"
import * as Goals from "./internal/goals.ts"
import {
  buildLoad,
  cpuRate,
  cpuSeconds,
  type Load,
  median,
  privateCopy,
  mainThreadRuns,
  rssMiB,
  type RssParts,
  rssParts,
  sleep,
  waitForLine
} from "./internal/proc.ts"
import * as Sink from "./internal/sink.ts"

const root = path.resolve(import.meta.dirname, "..")

const flag = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? fallback : Number(process.argv[i + 1])
}
const rate = flag("rate", 10_000)
const processes = flag("processes", 10)
const seconds = flag("seconds", 20)
const idleSeconds = Math.max(10, flag("idle-seconds", 10))
const soakMinutes = flag("minutes", Number(process.env["BENCH_SOAK_MINUTES"] ?? 0))
const profile = !process.argv.includes("--no-profile")
const saturate = process.argv.includes("--saturate")
const profileSeconds = flag("profile-seconds", 10)
const contention = !process.argv.includes("--no-contention")
/** Two workers per process: one connection can stall on a slow response while the other keeps the pace. */
const connections = 2 * processes
/** Before a measured window: the agent's JIT warms up on the first few thousand records. */
const warmupSeconds = 3

// Issue #12's table: the figures before this issue's work, on this kind of machine.
const PREVIOUS_IDLE_MS_PER_S = 10
const PREVIOUS_CPU_PER_SPAN_US = 20

const children: Array<ChildProcess> = []
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
})

/** A bare Node process's RSS (the same node binary the agent runs on), one second after start. */
const bareNodeRss = async (): Promise<number> => {
  const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" })
  children.push(child)
  await sleep(1000)
  const rss = rssMiB(child.pid!)
  child.kill("SIGKILL")
  return rss
}

/**
 * The RSS of the smallest Effect program (bench/internal/effectFloor.ts), bundled, minified and tree-shaken as the
 * CLI is, on the same node binary, one second after it has run: what any agent built on Effect pays before it does
 * anything of its own.
 */
const effectFloorRss = async (): Promise<number> => {
  const out = path.join(root, "test", ".cache", "bench", "effect-floor.mjs")
  fs.mkdirSync(path.dirname(out), { recursive: true })
  const esbuild = await import("esbuild")
  await esbuild.build({
    entryPoints: [path.join(root, "bench", "internal", "effectFloor.ts")],
    bundle: true,
    minify: true,
    platform: "node",
    format: "esm",
    outfile: out,
    logLevel: "error"
  })
  const child = spawn(process.execPath, [out], { stdio: ["ignore", "pipe", "inherit"] })
  children.push(child)
  await waitForLine(child, ["stdout"], /"count":100/, 30_000)
  await sleep(1000)
  const rss = rssMiB(child.pid!)
  child.kill("SIGKILL")
  return rss
}

/**
 * The agent's own floor: `run` started as users start it, every probe loaded, watching for an executable no process
 * runs (nothing attached, no records, exporters off), one second after it is ready.
 */
const agentFloor = async (bin: string): Promise<{ readonly rss: number; readonly parts: RssParts }> => {
  const nobody = privateCopy("/bin/true")
  const child = spawn(bin, ["run", "--exe", nobody], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none", OTEL_LOGS_EXPORTER: "none" }
  })
  children.push(child)
  await waitForLine(child, ["stdout", "stderr"], /ready: probes/, 60_000)
  await sleep(1000)
  const floor = { rss: rssMiB(child.pid!), parts: rssParts(child.pid!) }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  child.kill("SIGINT")
  await exited
  return floor
}

/**
 * The paced load over every backend; resolves with bench/load's totals when it ends. `stop` ends it early (the
 * promise then rejects).
 */
const startLoad = (load: string, urls: ReadonlyArray<string>, requests: number) => {
  const child = spawn(load, ["-url", urls.join(","), "-n", String(requests), "-c", String(connections), "-rate",
    String(rate)], { stdio: ["ignore", "pipe", "inherit"] })
  children.push(child)
  let out = ""
  child.stdout!.on("data", (c: Buffer) => void (out += c.toString()))
  const done = new Promise<Load>((resolve, reject) =>
    child.once("exit", (code) =>
      code === 0 ? resolve(JSON.parse(out) as Load) : reject(new Error(`bench/load exited with ${code}`))))
  return Object.assign(done, { stop: () => void child.kill("SIGTERM") })
}

/** The mode of bench/pipeline.ts that is the live agent's path (footprint's agent exports OTLP http/protobuf). */
const PIPELINE_MODE = "OTLP http/protobuf, metrics on"

/**
 * bench/pipeline.ts's µs of CPU per span for PIPELINE_MODE (median of 5 rounds of 100 000 spans: its per-request code
 * warms up over the first ones), run at SCHED_IDLE (`chrt --idle 0`), the policy the agent gives way with.
 */
const pipelineUs = async (): Promise<number> => {
  const out = path.join(os.tmpdir(), `probescope-pipeline-${process.pid}.json`)
  const pipeline = path.join(root, "bench", "pipeline.ts")
  const child = spawn("chrt", ["--idle", "0", process.execPath, pipeline, "100000", "5"], {
    stdio: ["ignore", "ignore", "inherit"],
    // This build's path only: BENCH_BEFORE names another agent for this bench, not a checkout for that one.
    env: { ...process.env, BENCH_MODES: PIPELINE_MODE, BENCH_PIPELINE_JSON: out, BENCH_BEFORE: "" }
  })
  children.push(child)
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve))
  if (code !== 0) throw new Error(`bench/pipeline.ts exited with ${code}`)
  const us = (JSON.parse(fs.readFileSync(out, "utf8")) as Record<string, number>)[PIPELINE_MODE]
  fs.rmSync(out)
  if (us === undefined) throw new Error(`bench/pipeline.ts wrote no figure for "${PIPELINE_MODE}"`)
  return us
}

interface Agent {
  readonly child: ChildProcess
  readonly pid: number
  /** SIGINT, then the exit code (the agent flushes its exporters and, under --cpu-prof, writes the profile). */
  readonly stop: () => Promise<number | null>
  /** The governor's lines saying the agent took its usual priority back (it waited for a CPU). */
  readonly waits: () => ReadonlyArray<string>
  /** The last lines the agent printed (its exit summary after stop). */
  readonly tail: () => string
}

/** An agent build to measure: this checkout's, or another (BENCH_BEFORE), with extra environment. */
interface Mode {
  readonly name: string
  readonly bin: string
  readonly env: Record<string, string>
}

const thisBuild = path.join(root, "bin", "probescope")
const modes: Array<Mode> = [{ name: "this build", bin: thisBuild, env: {} }]
if (process.env["BENCH_BEFORE"] !== undefined && process.env["BENCH_BEFORE"] !== "") {
  modes.push({ name: "before (BENCH_BEFORE)", bin: path.resolve(process.env["BENCH_BEFORE"]), env: {} })
}
// One mode per set of flags, the sets separated by ";". Through bin/probescope's PROBESCOPE_NODE_FLAGS: NODE_OPTIONS
// refuses most V8 flags.
// "none": without bin/probescope's default flags.
for (const flags of (process.env["BENCH_NODE_FLAGS"] ?? "").split(";").map((f) => f.trim()).filter((f) => f !== "")) {
  modes.push({
    name: flags === "none" ? "node without flags" : `node ${flags}`,
    bin: thisBuild,
    env: { PROBESCOPE_NODE_FLAGS: flags === "none" ? "" : flags }
  })
}
// One mode per set of environment variables for this build (allocator settings such as MALLOC_ARENA_MAX, which are
// read by the C library at start and so cannot be flags), the sets separated by ";", each "NAME=value ...".
for (const set of (process.env["BENCH_AGENT_ENV"] ?? "").split(";").map((f) => f.trim()).filter((f) => f !== "")) {
  const env: Record<string, string> = {}
  for (const pair of set.split(/\s+/)) {
    const eq = pair.indexOf("=")
    if (eq <= 0) throw new Error(`BENCH_AGENT_ENV: "${pair}" is not NAME=value`)
    env[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  modes.push({ name: `env ${set}`, bin: thisBuild, env })
}

const startAgent = async (
  backend: string,
  pids: ReadonlyArray<number>,
  sink: Sink.Sink,
  extraEnv: Record<string, string>,
  bin = thisBuild
) => {
  const child = spawn(bin, ["run", "--exe", backend], {
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      OTEL_TRACES_EXPORTER: "otlp",
      // Metrics on, at the default export interval: the idle figure is the agent as users run it.
      OTEL_METRICS_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.httpUrl,
      OTEL_BSP_SCHEDULE_DELAY: "1000",
      ...extraEnv
    }
  })
  children.push(child)
  const attached = new Set<number>()
  /** The governor's "the agent waited … for a CPU" lines (it took its usual priority back). */
  const waits = new Set<string>()
  let tail = ""
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`attached to ${attached.size} of ${pids.length} within 60 s`)), 60_000)
    for (const s of [child.stdout!, child.stderr!]) {
      s.on("data", (c: Buffer) => {
        tail = (tail + c.toString()).slice(-4000)
        for (const m of tail.matchAll(/pid (\d+): attached/g)) attached.add(Number(m[1]))
        for (const m of tail.matchAll(/\S* ?INFO[^\n]*the agent waited [^\n]*\n/g)) waits.add(m[0].trim())
        if (pids.every((p) => attached.has(p))) {
          clearTimeout(timer)
          resolve()
        }
      })
    }
    child.once("exit", (code) => reject(new Error(`the agent exited (${code}) before attaching:\n${tail}`)))
  })
  const agent: Agent = {
    child,
    pid: child.pid!,
    stop: () => {
      const exit = new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)))
      child.kill("SIGINT")
      return exit
    },
    tail: () => tail,
    waits: () => [...waits]
  }
  return agent
}

/** Waits until the sink has counted `expected` spans since `from` (or 30 s pass); the count it got. */
const awaitSpans = async (sink: Sink.Sink, from: number, expected: number): Promise<number> => {
  const until = performance.now() + 30_000
  let got = (await sink.spans()) - from
  while (got < expected && performance.now() < until) {
    await sleep(100)
    got = (await sink.spans()) - from
  }
  return got
}

/** Least-squares slope of y over x. */
const slope = (xs: ReadonlyArray<number>, ys: ReadonlyArray<number>): number => {
  const n = xs.length
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my)
    den += (xs[i]! - mx) ** 2
  }
  return den === 0 ? 0 : num / den
}

const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length

const main = async () => {
  const dir = buildExample(process.env["BENCH_GO_VERSION"] ?? "1.26.8")
  const backendExe = privateCopy(path.join(dir, "backend"))
  const load = buildLoad()
  const bareRss = await bareNodeRss()
  const effectRss = await effectFloorRss()
  const floor = await agentFloor(thisBuild)
  // Filling the host must not starve the sink, the stand-in for a collector on another host (bench/internal/sink.ts).
  const sink = await Sink.start(saturate ? { nice: -10 } : {})
  process.on("exit", sink.stop)

  const backends: Array<ChildProcess> = []
  const urls: Array<string> = []
  for (let i = 0; i < processes; i++) {
    const b = spawn(backendExe, ["-addr", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] })
    children.push(b)
    backends.push(b)
    urls.push(`http://${(await waitForLine(b, ["stdout"], /^listening on (.+)$/, 10_000))[1]}/users/7`)
  }
  const pids = backends.map((b) => b.pid!)

  // --- footprint: idle (every agent attached at once), then the steady load (one agent at a time) ---------------
  const agents: Array<Agent> = []
  for (const mode of modes) agents.push(await startAgent(backendExe, pids, sink, mode.env, mode.bin))
  await sleep(5000) // start-up work and its garbage settle before idle is sampled
  const idleRss = agents.map((a) => rssMiB(a.pid))
  const idleParts = agents.map((a) => rssParts(a.pid))
  const runs0 = agents.map((a) => mainThreadRuns(a.pid))
  const idleT0 = performance.now()
  // One-second slices, so a reader sees whether idle is flat or still settling; every agent in the same slices.
  const idleSlicesOf: Array<Array<number>> = agents.map(() => [])
  for (let i = 0; i < idleSeconds; i++) {
    const rates = await Promise.all(agents.map((a) => cpuRate(a.pid, 1000)))
    rates.forEach((r, m) => idleSlicesOf[m]!.push(r * 1000))
  }
  const idleWakeupsOf = agents.map((a, m) => (mainThreadRuns(a.pid) - runs0[m]!) / ((performance.now() - idleT0) / 1000))
  const idleMsOf = idleSlicesOf.map(mean)
  for (const other of agents.slice(1)) await other.stop()
  // Their links detach as their processes exit: let that end before this build's load starts.
  if (agents.length > 1) await sleep(2000)
  const agent = agents[0]!
  const idleSlices = idleSlicesOf[0]!
  const idleMsPerS = idleMsOf[0]!
  const rssIdle = idleRss[0]!
  const rssIdleEnd = rssMiB(agent.pid)

  /** The warm-up and the measured load through `a`, and what it cost it; `idleMs` is its idle rate before. */
  const loadPhase = async (a: Agent, idleMs: number) => {
    const from = await sink.spans()
    const warm = await startLoad(load, urls, rate * warmupSeconds)
    const cpu0 = cpuSeconds(a.pid)
    const t0 = performance.now()
    const loadDone = startLoad(load, urls, rate * seconds)
    const rssUnderLoad: Array<number> = []
    let loading = true
    void loadDone.finally(() => void (loading = false))
    const hogs: Array<ChildProcess> = []
    let second = 0
    while (loading) {
      await sleep(1000)
      rssUnderLoad.push(rssMiB(a.pid))
      second++
      if (saturate && second === Math.floor(seconds / 3)) {
        for (let i = 0; i <= os.availableParallelism(); i++) {
          const hog = spawn("sh", ["-c", "while :; do :; done"], { stdio: "ignore" })
          children.push(hog)
          hogs.push(hog)
        }
      }
      if (second === Math.floor((2 * seconds) / 3)) for (const h of hogs.splice(0)) h.kill("SIGKILL")
    }
    for (const h of hogs) h.kill("SIGKILL")
    const measured = await loadDone
    const made = warm.requests + measured.requests
    const received = await awaitSpans(sink, from, made)
    const cpu = cpuSeconds(a.pid) - cpu0
    const window = (performance.now() - t0) / 1000
    const parts = rssParts(a.pid)
    await sleep(2000) // the last export's work ends
    const idleAfterMsPerS = (await cpuRate(a.pid, 5000)) * 1000
    // The lower idle rate is taken off (the one before the load may hold start-up work, and taking that off would
    // flatter the figure). The warm-up's spans may still have been in flight when the window started: they count in.
    const background = Math.min(idleMs, idleAfterMsPerS) / 1000
    const cpuPerSpanUs = (Math.max(0, cpu - background * window) / measured.requests) * 1e6
    // Steady: the second half of the window (the first holds the ring and heap growing to their working size).
    const rssSteady = median(rssUnderLoad.slice(Math.floor(rssUnderLoad.length / 2)))
    const rssMax = Math.max(...rssUnderLoad)
    return { warm, measured, made, received, cpu, window, idleAfterMsPerS, cpuPerSpanUs, rssSteady, rssMax, parts }
  }

  const main0 = await loadPhase(agent, idleMsPerS)
  const { warm, measured, made, received, cpu, window, idleAfterMsPerS, cpuPerSpanUs, rssSteady, rssMax } = main0
  // --- soak -------------------------------------------------------------------------------------------------------
  let soak: { minutes: number; samples: Array<[number, number]>; made: number; received: number; rps: number } | undefined
  if (soakMinutes > 0) {
    const s0 = await sink.spans()
    const samples: Array<[number, number]> = []
    const start = performance.now()
    const soakLoad = startLoad(load, urls, Math.round(rate * 60 * soakMinutes))
    let running = true
    void soakLoad.finally(() => void (running = false))
    while (running) {
      await Promise.race([sleep(10_000), soakLoad.catch(() => undefined)])
      if (running) samples.push([(performance.now() - start) / 60_000, rssMiB(agent.pid)])
    }
    const done = await soakLoad
    soak = {
      minutes: soakMinutes,
      samples,
      made: done.requests,
      received: await awaitSpans(sink, s0, done.requests),
      rps: done.rps
    }
  }
  const exitCode = await agent.stop()
  const agentTail = agent.tail()

  // --- the other builds or flags under the same load, one at a time ------------------------------------------
  const others: Array<{ mode: Mode; phase: Awaited<ReturnType<typeof loadPhase>>; exitCode: number | null }> = []
  for (const mode of modes.slice(1)) {
    const a = await startAgent(backendExe, pids, sink, mode.env, mode.bin)
    await sleep(5000)
    const phase = await loadPhase(a, idleMsOf[modes.indexOf(mode)]!)
    others.push({ mode, phase, exitCode: await a.stop() })
  }

  // --- the same JavaScript in-process, alone and beside the load ----------------------------------------------
  let inProcess: { readonly alone: number; readonly loaded: number } | undefined
  if (contention) {
    const alone = await pipelineUs()
    const floorAgent = await startAgent(backendExe, pids, sink, {
      OTEL_TRACES_SAMPLER: "always_off",
      OTEL_TRACES_EXPORTER: "none",
      OTEL_METRICS_EXPORTER: "none"
    })
    // Long enough for any pipeline run: stopped as soon as it is done.
    const beside = startLoad(load, urls, rate * 120)
    beside.catch(() => undefined)
    await sleep(warmupSeconds * 1000)
    const loaded = await pipelineUs().finally(beside.stop)
    await floorAgent.stop()
    inProcess = { alone, loaded }
  }

  // --- profile ----------------------------------------------------------------------------------------------------
  let summary: CpuProfile.Summary | undefined
  let profileNote = ""
  if (profile) {
    const profDir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-prof-"))
    const profAgent = await startAgent(backendExe, pids, sink, {
      NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir} --cpu-prof-interval=250`,
      // The bundle, not the start-up snapshot: the stages are told apart by the bundle's module comments, and the
      // snapshot's script is one line without them.
      PROBESCOPE_SNAPSHOT: "0"
    })
    await sleep(5000)
    await startLoad(load, urls, rate * warmupSeconds)
    // process.hrtime and V8's profile timestamps are both CLOCK_MONOTONIC in µs on Linux.
    const fromUs = Number(process.hrtime.bigint() / 1000n)
    const profLoad = await startLoad(load, urls, rate * profileSeconds)
    const toUs = Number(process.hrtime.bigint() / 1000n)
    await profAgent.stop()
    const file = fs.readdirSync(profDir).find((f) => f.includes(`.${profAgent.pid}.`) && f.endsWith(".cpuprofile"))
    if (file === undefined) {
      profileNote = `no profile written by pid ${profAgent.pid} in ${profDir}`
    } else {
      const full = path.join(profDir, file)
      const b = CpuProfile.bounds(full)
      if (b.startUs > fromUs || b.endUs < toUs) {
        profileNote = `the load window is not inside the profile's (clocks differ?): whole profile summarised`
        summary = CpuProfile.summarize(full)
      } else {
        summary = CpuProfile.summarize(full, { fromUs, toUs })
      }
      profileNote += `${profileNote === "" ? "" : "; "}${profLoad.rps.toFixed(0)} req/s reached; profile kept in ${full}`
    }
  }
  for (const b of backends) b.kill("SIGTERM")
  sink.stop()

  // --- report -----------------------------------------------------------------------------------------------------
  const lost = made - received
  const rateNote = `${measured.rps.toFixed(0)} req/s reached of ${rate} asked, ${processes} processes`
  console.log(`footprint: bin/probescope run --exe backend attached to ${processes} backends (examples/go-service), ` +
    `${connections} keep-alive connections, OTLP http/protobuf (traces, and metrics at the default interval) to a local sink`)
  console.log(`load: ${measured.requests} requests in ${measured.seconds.toFixed(1)} s = ${measured.rps.toFixed(0)} ` +
    `req/s (${rate} asked; 1 server span each), p50 ${measured.p50us.toFixed(0)} µs, p99 ${measured.p99us.toFixed(0)} µs, ` +
    `${measured.errors + warm.errors} errors; warm-up ${warm.requests} requests before`)
  const row = (name: string, value: string, vs: string) => console.log(`${name.padEnd(38)}${value.padStart(14)}   ${vs}`)
  row("bare node -e (same run)", `${bareRss.toFixed(1)} MiB`, "")
  row("smallest Effect program (same run)", `${effectRss.toFixed(1)} MiB`,
    `${(effectRss / bareRss).toFixed(2)}x bare node; leaves ${(64 - effectRss).toFixed(1)} MiB of the 64 MiB goal ` +
      "(bench/internal/effectFloor.ts, bundled)")
  row("agent attached to nothing", `${floor.rss.toFixed(1)} MiB`,
    `${(floor.rss / effectRss).toFixed(2)}x the Effect program; every probe loaded, exporters off`)
  row("agent RSS attached, idle", `${rssIdle.toFixed(1)} MiB`,
    `${(rssIdle / 64).toFixed(2)}x the 64 MiB goal, ${(rssIdle / bareRss).toFixed(2)}x bare node ` +
      `(${rssIdleEnd.toFixed(1)} MiB after the idle window)`)
  row("agent RSS under load, steady", `${rssSteady.toFixed(1)} MiB`,
    `${(rssSteady / 64).toFixed(2)}x the 64 MiB goal, ${(rssSteady / bareRss).toFixed(2)}x bare node (max ${rssMax.toFixed(1)})`)
  row(`agent idle CPU (${idleSeconds} s, no load)`, `${idleMsPerS.toFixed(2)} ms/s`,
    `${idleMsPerS.toFixed(2)}x the 1 ms/s goal, ${(idleMsPerS / PREVIOUS_IDLE_MS_PER_S).toFixed(2)}x #12's ` +
      `${PREVIOUS_IDLE_MS_PER_S} ms/s; per second: ${idleSlices.map((x) => x.toFixed(1)).join(" ")}`)
  row("agent idle CPU after the load (5 s)", `${idleAfterMsPerS.toFixed(2)} ms/s`, "")
  row("agent CPU per span under load", `${cpuPerSpanUs.toFixed(2)} µs`,
    `${(cpuPerSpanUs / 2).toFixed(1)}x the 2 µs goal, ${(cpuPerSpanUs / PREVIOUS_CPU_PER_SPAN_US).toFixed(2)}x #12's ` +
      `~${PREVIOUS_CPU_PER_SPAN_US} µs (${cpu.toFixed(2)} s of CPU from the load's start to the last span at the ` +
      `sink, ${window.toFixed(1)} s)`)
  if (inProcess !== undefined) {
    row("agent's path in-process, alone", `${inProcess.alone.toFixed(2)} µs`,
      `bench/pipeline.ts "${PIPELINE_MODE}", at SCHED_IDLE; the live agent is ` +
        `${(cpuPerSpanUs / inProcess.alone).toFixed(2)}x this`)
    row("the same beside this load", `${inProcess.loaded.toFixed(2)} µs`,
      `${(inProcess.loaded / inProcess.alone).toFixed(2)}x alone (the load through an always_off agent); the live ` +
        `agent is ${(cpuPerSpanUs / inProcess.loaded).toFixed(2)}x this`)
  }
  row("spans lost (sink vs requests)", `${lost}`, `${received} received of ${made} made (warm-up included)`)
  if (saturate) {
    row("host filled up (--saturate)", "", `${os.availableParallelism() + 1} busy loops over the load's middle third; ` +
      `the agent took its priority back: ${agent.waits().join(" | ") || "never"}`)
  }
  const partsText = (p: RssParts) =>
    `anonymous ${p.anonymous.toFixed(1)}, node binary ${p.nodeBinary.toFixed(1)}, BPF maps ${p.bpfMaps.toFixed(1)}, ` +
    `other ${p.other.toFixed(1)} MiB`
  row("agent idle wakeups (main thread)", `${idleWakeupsOf[0]!.toFixed(1)} /s`, "")
  row("agent attached to nothing, by mapping", "", partsText(floor.parts))
  row("agent RSS idle, by mapping", "", partsText(idleParts[0]!))
  row("agent RSS under load, by mapping", "", partsText(main0.parts))
  if (others.length > 0) {
    // Each figure beside this build's, as a ratio (this build / the other): below 1 is this build's gain.
    console.log(`compared in the same run (idle: all agents attached at once, the same ${idleSeconds} one-second ` +
      `slices; load: one agent at a time, the same load)`)
    const table: Array<Record<string, string>> = []
    const ratio = (mine: number, theirs: number) => theirs === 0 ? "-" : `${(mine / theirs).toFixed(2)}x`
    table.push({
      agent: modes[0]!.name,
      "idle ms/s": idleMsPerS.toFixed(2),
      "idle median": median(idleSlices).toFixed(2),
      "idle wakeups/s": idleWakeupsOf[0]!.toFixed(1),
      "RSS idle MiB": rssIdle.toFixed(1),
      "RSS load MiB": rssSteady.toFixed(1),
      "µs/span": cpuPerSpanUs.toFixed(2),
      "req/s": measured.rps.toFixed(0),
      lost: String(lost)
    })
    for (const o of others) {
      const m = modes.indexOf(o.mode)
      table.push({
        agent: o.mode.name,
        "idle ms/s": `${idleMsOf[m]!.toFixed(2)} (${ratio(idleMsPerS, idleMsOf[m]!)})`,
        // The median of the one-second slices: a burst of exec events or a GC in one slice moves the mean.
        "idle median": `${median(idleSlicesOf[m]!).toFixed(2)} (${ratio(median(idleSlices), median(idleSlicesOf[m]!))})`,
        "idle wakeups/s": `${idleWakeupsOf[m]!.toFixed(1)} (${ratio(idleWakeupsOf[0]!, idleWakeupsOf[m]!)})`,
        "RSS idle MiB": `${idleRss[m]!.toFixed(1)} (${ratio(rssIdle, idleRss[m]!)})`,
        "RSS load MiB": `${o.phase.rssSteady.toFixed(1)} (${ratio(rssSteady, o.phase.rssSteady)})`,
        "µs/span": `${o.phase.cpuPerSpanUs.toFixed(2)} (${ratio(cpuPerSpanUs, o.phase.cpuPerSpanUs)})`,
        "req/s": o.phase.measured.rps.toFixed(0),
        lost: String(o.phase.made - o.phase.received)
      })
      console.log(`  ${o.mode.name}: RSS idle ${partsText(idleParts[m]!)}; under load ${partsText(o.phase.parts)}; ` +
        `exit code ${o.exitCode}`)
    }
    console.table(table)
  }
  console.log(`agent exit code: ${exitCode}`)
  // 3 is "something was lost": the agent's exit summary says what.
  if (exitCode !== 0) console.log(agentTail.split("\n").slice(-12).join("\n"))

  const floorsNote = `the smallest Effect program ${effectRss.toFixed(1)} MiB, the agent attached to nothing ` +
    `${floor.rss.toFixed(1)} MiB (same run)`
  Goals.record("footprint", {
    goal: "agent RSS, 10 processes at 10k spans/s, steady",
    figure: rssSteady,
    unit: "MiB",
    target: 64,
    baseline: { name: "bare node, same run", value: bareRss },
    note: `${rateNote}; ${floorsNote}`
  })
  Goals.record("footprint", {
    goal: "agent RSS, attached to 10 processes, idle",
    figure: rssIdle,
    unit: "MiB",
    target: 64,
    baseline: { name: "bare node, same run", value: bareRss },
    note: floorsNote
  })
  Goals.record("footprint", {
    goal: "agent idle CPU while attached",
    figure: idleMsPerS,
    unit: "ms/s",
    target: 1,
    baseline: others.length > 0 && modes[1]!.name.startsWith("before") ?
      { name: "BENCH_BEFORE, same run", value: idleMsOf[1]! } :
      { name: "#12 before", value: PREVIOUS_IDLE_MS_PER_S },
    note: `${idleSeconds} s, ${processes} processes attached`
  })
  Goals.record("footprint", {
    goal: "agent CPU per span, OTLP http/protobuf, 10 processes at 10k spans/s",
    figure: cpuPerSpanUs,
    unit: "µs",
    target: 2,
    baseline: { name: "#12 before", value: PREVIOUS_CPU_PER_SPAN_US },
    note: inProcess === undefined ? rateNote : `${rateNote}; the same path in-process (bench/pipeline.ts) ` +
      `${inProcess.alone.toFixed(2)} µs alone, ${inProcess.loaded.toFixed(2)} µs beside this load (same run)`
  })
  Goals.record("footprint", {
    goal: "spans lost at 10k spans/s (sink vs requests)",
    figure: lost,
    unit: "spans",
    target: 0,
    note: `${received} of ${made}`
  })

  let failed = lost !== 0 || measured.errors + warm.errors > 0
  if (soak !== undefined) {
    const first = soak.samples.filter(([m]) => m <= 1).map(([, r]) => r)
    const last = soak.samples.filter(([m]) => m >= soak!.minutes - 1).map(([, r]) => r)
    const perMin = slope(soak.samples.map(([m]) => m), soak.samples.map(([, r]) => r))
    // The first minute holds the heap and the exporter's queue growing to their working size (as the steady figure
    // above leaves out the window's first half): growth is judged from there on.
    const settled = soak.samples.filter(([m]) => m > 1)
    const settledPerMin = slope(settled.map(([m]) => m), settled.map(([, r]) => r))
    const growth = mean(last) - mean(first)
    console.log(`soak: ${soak.minutes} min at ${soak.rps.toFixed(0)} req/s, RSS every 10 s: first minute ` +
      `${mean(first).toFixed(1)} MiB, last minute ${mean(last).toFixed(1)} MiB (growth ${growth.toFixed(1)} MiB), ` +
      `least-squares slope ${perMin.toFixed(3)} MiB/min, after the first minute ${settledPerMin.toFixed(3)} MiB/min; ` +
      `spans ${soak.received} of ${soak.made}`)
    console.log(`soak RSS (MiB): ${soak.samples.map(([, r]) => r.toFixed(0)).join(" ")}`)
    Goals.record("footprint", {
      goal: `agent RSS growth over a ${soak.minutes}-minute soak at 10k spans/s, after the first minute`,
      figure: settledPerMin,
      unit: "MiB/min",
      // "Bounded growth" read as less than 1 MiB over ten minutes: a leak of one record per span would be far more.
      target: 0.1,
      baseline: { name: "first-minute RSS", value: mean(first) },
      note: `first minute ${mean(first).toFixed(1)} MiB, last ${mean(last).toFixed(1)} MiB, slope over all ` +
        `${perMin.toFixed(3)} MiB/min`
    })
    if (soak.received !== soak.made) failed = true
  }

  if (summary !== undefined) {
    // V8 samples the thread on a wall clock: a busy sample may include time the thread waited for a CPU (the load,
    // the servers and the agent share the machine), so the shares are the finding, the milliseconds an upper bound.
    console.log(`profile: agent main thread under ${rate} req/s asked, ${(summary.windowMs / 1000).toFixed(1)} s window, ` +
      `${summary.samples} busy samples (250 µs apart), ${summary.cpuMs.toFixed(0)} ms busy ` +
      `(${(summary.cpuMs / summary.windowMs * 100).toFixed(0)} % of the window); ${profileNote}`)
    for (const s of summary.byStage) {
      console.log(`  ${s.stage.padEnd(34)}${`${s.ms.toFixed(0)} ms`.padStart(10)}${`${(s.share * 100).toFixed(1)} %`.padStart(9)}`)
    }
    console.log("  top self time:")
    for (const t of summary.top) {
      console.log(`  ${`${(t.share * 100).toFixed(1)} %`.padStart(8)}  ${t.fn}`)
    }
  } else if (profile) {
    console.log(`profile: ${profileNote}`)
  }

  if (failed) {
    console.error(`footprint: spans lost (${lost}) or request errors (${measured.errors + warm.errors}); see above`)
    process.exit(1)
  }
  process.exit(0)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
