/**
 * What the agent costs a real Go service: the example service (examples/go-service, frontend → backend on loopback)
 * under a keep-alive load from a separate Go process (bench/load), in rounds: without the agent, then with
 * `bin/probescope run --exe frontend --exe backend` attached (OTEL_TRACES_EXPORTER=none and
 * OTEL_METRICS_EXPORTER=none, so export is not measured).
 * Every request makes three spans: the frontend's server span, its client span and the backend's server span.
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

const root = path.resolve(import.meta.dirname, "..")
const requests = Number(process.argv[2] ?? 3000)
const connections = Number(process.argv[3] ?? 1)
/** Without/with pairs; the VM is noisy, so the table shows medians and the per-round ratios show the spread. */
const rounds = Number(process.argv[4] ?? 3)
const warmup = Math.min(500, requests)
const clockTicks = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim())

interface Load {
  readonly requests: number
  readonly errors: number
  readonly seconds: number
  readonly rps: number
  readonly p50us: number
  readonly p90us: number
  readonly p99us: number
  readonly maxus: number
}

const children: Array<ChildProcess> = []
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
})

const waitForLine = (child: ChildProcess, streams: ReadonlyArray<"stdout" | "stderr">, pattern: RegExp, ms: number) =>
  new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${ms} ms`)), ms)
    for (const s of streams) {
      readline.createInterface({ input: child[s]! }).on("line", (line) => {
        const m = pattern.exec(line)
        if (m) {
          clearTimeout(timer)
          resolve(m)
        }
      })
    }
    child.once("exit", (code) => reject(new Error(`process exited (${code}) before printing ${pattern}`)))
  })

/** utime + stime of a process, in seconds. */
const cpuSeconds = (pid: number): number => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  // Fields after the command (which may hold spaces), from field 3 on.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / clockTicks
}

const rssMiB = (pid: number): number => {
  const line = fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))
  return Number(line?.split(/\s+/)[1] ?? 0) / 1024
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const build = () => {
  const dir = buildExample(process.env["BENCH_GO_VERSION"] ?? "1.26.8")
  const load = path.join(root, "test", ".cache", "bench", "load")
  fs.mkdirSync(path.dirname(load), { recursive: true })
  execFileSync("go", ["build", "-o", load, "."], {
    cwd: path.join(root, "bench", "load"),
    env: { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=mod" },
    stdio: "inherit"
  })
  return { frontend: path.join(dir, "frontend"), backend: path.join(dir, "backend"), load }
}

const runLoad = (load: string, url: string, n: number): Load =>
  JSON.parse(execFileSync(load, ["-url", url, "-n", String(n), "-c", String(connections)]).toString()) as Load

interface Round {
  readonly without: Measured
  readonly with: Measured
  /** Agent CPU per request handled while attached (idle rate taken off), seconds. */
  readonly agentCpuPerRequest: number
  readonly agentIdlePerSecond: number
  readonly rssIdle: number
  readonly rssLoaded: number
  readonly exitCode: number | null
}

interface Measured {
  readonly load: Load
  readonly serviceCpuPerRequest: number
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const main = async () => {
  const bins = build()
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

  const measure = (): Measured => {
    runLoad(bins.load, url, warmup) // connections, goroutines, caches
    const cpu0 = serviceCpu()
    const load = runLoad(bins.load, url, requests)
    return { load, serviceCpuPerRequest: (serviceCpu() - cpu0) / requests }
  }

  const startAgent = async () => {
    const agent = spawn(path.join(root, "bin", "probescope"), ["run", "--exe", bins.frontend, "--exe", bins.backend], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none" }
    })
    children.push(agent)
    const attached = new Set<string>()
    const bothAttached = new Promise<void>((resolve) => {
      for (const s of ["stdout", "stderr"] as const) {
        readline.createInterface({ input: agent[s]! }).on("line", (line) => {
          const m = /pid (\d+): attached/.exec(line)
          if (m) attached.add(m[1]!)
          if (services.every((p) => attached.has(String(p)))) resolve()
        })
      }
    })
    const timeout = sleep(60_000).then(() => {
      throw new Error("the agent did not attach to both services within 60 s")
    })
    await Promise.race([bothAttached, timeout])
    return agent
  }

  const round = async (): Promise<Round> => {
    const without = measure()
    const agent = await startAgent()
    await sleep(1000) // start-up work settles before the agent's CPU is sampled
    const pid = agent.pid!
    const rssIdle = rssMiB(pid)
    const idle0 = cpuSeconds(pid)
    await sleep(1000)
    const agentIdlePerSecond = cpuSeconds(pid) - idle0
    const cpu0 = cpuSeconds(pid)
    const t0 = performance.now()
    const withAgent = measure()
    await sleep(500) // the last records drain from the ring buffer
    const agentCpu = cpuSeconds(pid) - cpu0
    const window = (performance.now() - t0) / 1000
    const rssLoaded = rssMiB(pid)
    const exit = new Promise<number | null>((resolve) => agent.once("exit", (c) => resolve(c)))
    agent.kill("SIGINT")
    const exitCode = await exit
    return {
      without,
      with: withAgent,
      // The warm-up requests ran while attached too.
      agentCpuPerRequest: Math.max(0, agentCpu - agentIdlePerSecond * window) / (requests + warmup),
      agentIdlePerSecond,
      rssIdle,
      rssLoaded,
      exitCode
    }
  }

  const results: Array<Round> = []
  for (let i = 0; i < rounds; i++) results.push(await round())
  backend.kill("SIGTERM")
  frontend.kill("SIGTERM")

  const m = (f: (r: Round) => number) => median(results.map(f))
  const row = (name: string, w: (x: Measured) => number, unit: string) => {
    const x = m((r) => w(r.without))
    const y = m((r) => w(r.with))
    const ratios = results.map((r) => (w(r.with) / w(r.without)).toFixed(2)).join(" ")
    return `${name.padEnd(30)} ${x.toFixed(0).padStart(9)} ${y.toFixed(0).padStart(9)} ${unit.padEnd(5)} ` +
      `${(y / x).toFixed(2).padStart(5)}x   ${ratios}`
  }
  console.log(
    `overhead: ${requests} x GET /users/7 over ${connections} keep-alive connection(s), ${rounds} rounds ` +
      "(medians); frontend -> backend, 3 spans per request"
  )
  const header = `${"".padEnd(30)} ${"without".padStart(9)} ${"with".padStart(9)} ${"unit".padEnd(5)}`
  console.log(`${header} ${"ratio".padStart(6)}   per round`)
  console.log(row("throughput", (x) => x.load.rps, "req/s"))
  console.log(row("latency p50", (x) => x.load.p50us, "µs"))
  console.log(row("latency p90", (x) => x.load.p90us, "µs"))
  console.log(row("latency p99", (x) => x.load.p99us, "µs"))
  console.log(row("service CPU/request (both)", (x) => x.serviceCpuPerRequest * 1e6, "µs"))
  const errors = results.reduce((t, r) => t + r.without.load.errors + r.with.load.errors, 0)
  const agentUs = m((r) => r.agentCpuPerRequest) * 1e6
  console.log(`errors: ${errors}; agent exit codes: ${results.map((r) => r.exitCode).join(" ")}`)
  console.log(
    `agent: ${agentUs.toFixed(1)} µs CPU per request (${(agentUs / 3).toFixed(1)} µs per span), idle ` +
      `${(m((r) => r.agentIdlePerSecond) * 1000).toFixed(1)} ms CPU/s (taken off; 1 tick = ${1000 / clockTicks} ms); ` +
      `RSS ${m((r) => r.rssIdle).toFixed(0)} MiB attached idle, ${m((r) => r.rssLoaded).toFixed(0)} MiB after the load`
  )
  process.exit(0)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
