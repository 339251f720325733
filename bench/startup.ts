/**
 * How long `probescope run --exe <backend>` takes from launch to work: launch → the first "pid N: attached"
 * line, launch → the "ready" line, and launch → the first traced request (requests GET /users/<n> are sent every
 * 5 ms from launch on; the first traced one is the lowest n that shows up in the console output or at the OTLP
 * sink, so the exporters' batch delay is not counted), and the agent's CPU seconds until ready (its children
 * included: the Node version check of bin/probescope). Exporters: none, console (JSON lines), OTLP http/protobuf to a local
 * Node HTTP sink that answers 200. `node -e 0` and `node -e 'await import("effect")'` are measured alongside as
 * floors, and the table shows each figure's ratio to them.
 *
 *   node_modules/.bin/node bench/startup.ts [rounds, default 5]
 *
 * BENCH_PROBESCOPE=<another checkout's bin/probescope> measures that build instead. Root is needed (uprobes). Rounds
 * interleave the configurations; the table shows medians.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import * as readline from "node:readline"
import { buildExample } from "../test/instrumentations/fixtures.ts"

const root = path.resolve(import.meta.dirname, "..")
const rounds = Number(process.argv[2] ?? 5)
/** Another checkout's bin/probescope (e.g. a worktree of an older commit), for before/after figures. */
const bin = process.env["BENCH_PROBESCOPE"] ?? path.join(root, "bin", "probescope")
const clockTicks = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim())

const children: Array<ChildProcess> = []
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** utime + stime + cutime + cstime (children waited for), in seconds. */
const cpuSeconds = (stat: string): number => {
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / clockTicks
}

/** Wall and CPU seconds of one `node <args>` run (CPU read from a shell that waited for it). */
const floor = (args: ReadonlyArray<string>) => {
  const quoted = args.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ")
  const t0 = performance.now()
  const stat = execFileSync("sh", ["-c", `'${process.execPath}' ${quoted} >/dev/null; cat /proc/$$/stat`]).toString()
  return { wall: performance.now() - t0, cpu: cpuSeconds(stat) }
}

interface Sink {
  readonly url: string
  /** Every request body received since the last reset, as latin1 text (OTLP protobuf keeps strings as bytes). */
  readonly bodies: Array<string>
}

const startSink = () =>
  new Promise<Sink>((resolve) => {
    const bodies: Array<string> = []
    const server = http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        bodies.push(Buffer.concat(chunks).toString("latin1"))
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end()
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      server.unref()
      resolve({ url: `http://127.0.0.1:${port}`, bodies })
    })
  })

const waitForLine = (child: ChildProcess, pattern: RegExp, ms: number) =>
  new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${ms} ms`)), ms)
    for (const s of [child.stdout, child.stderr]) {
      if (s !== null) readline.createInterface({ input: s }).on("line", (line) => {
        const m = pattern.exec(line)
        if (m) {
          clearTimeout(timer)
          resolve(m)
        }
      })
    }
  })

type Config = "none" | "console" | "otlp"

interface Sample {
  readonly attached: number
  readonly ready: number
  readonly firstTraced: number | undefined
  readonly cpuReady: number
}

const main = async () => {
  const dir = buildExample(process.env["BENCH_GO_VERSION"] ?? "1.26.8")
  const exe = path.join(dir, "backend")
  const backend = spawn(exe, ["-addr", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] })
  children.push(backend)
  const addr = (await waitForLine(backend, /^listening on (.+)$/, 10_000))[1]!
  const sink = await startSink()
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })

  const once = async (config: Config): Promise<Sample> => {
    sink.bodies.length = 0
    let stdout = ""
    const sent: Array<number> = []
    const t0 = performance.now()
    const child = spawn(bin, ["run", "--exe", exe], {
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        OTEL_TRACES_EXPORTER: config,
        OTEL_METRICS_EXPORTER: "none",
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY: "50",
        PROBESCOPE_CONSOLE_FORMAT: "jsonl"
      }
    })
    children.push(child)
    child.stdout!.on("data", (c: Buffer) => void (stdout += c.toString("latin1")))
    const attached = waitForLine(child, /pid \d+: attached/, 30_000).then(() => performance.now() - t0)
    const ready = waitForLine(child, /probescope: ready/, 30_000).then(() => ({
      at: performance.now() - t0,
      cpu: cpuSeconds(fs.readFileSync(`/proc/${child.pid}/stat`, "utf8"))
    }))
    let sending = true
    const load = (async () => {
      for (let n = 0; sending; n++) {
        sent.push(performance.now() - t0)
        http.get({ host: addr.split(":")[0], port: Number(addr.split(":")[1]), path: `/users/${n}`, agent }, (r) =>
          r.resume()).on("error", () => undefined)
        await sleep(5)
      }
    })()
    const [a, r] = await Promise.all([attached, ready])
    // Traced requests reach the output after a batch delay; wait for some.
    await sleep(config === "none" ? 100 : 600)
    sending = false
    await load
    const exit = new Promise<void>((resolve) => child.once("exit", () => resolve()))
    child.kill("SIGINT")
    await exit
    const text = config === "console" ? stdout : sink.bodies.join("")
    const seen = [...text.matchAll(/\/users\/(\d+)/g)].map((m) => Number(m[1]))
    const first = seen.length === 0 ? undefined : Math.min(...seen)
    return { attached: a, ready: r.at, cpuReady: r.cpu, firstTraced: first === undefined ? undefined : sent[first] }
  }

  const configs: ReadonlyArray<Config> = ["none", "console", "otlp"]
  const samples = new Map<Config, Array<Sample>>(configs.map((c) => [c, []]))
  const nodeFloor: Array<{ wall: number; cpu: number }> = []
  const effectFloor: Array<{ wall: number; cpu: number }> = []
  await once("none") // page cache, the dist/ build check
  for (let i = 0; i < rounds; i++) {
    nodeFloor.push(floor(["-e", "0"]))
    effectFloor.push(floor(["--input-type=module", "-e", "await import(\"effect\")"]))
    for (const c of configs) samples.get(c)!.push(await once(c))
  }
  backend.kill("SIGTERM")

  const nodeWall = median(nodeFloor.map((f) => f.wall))
  const effectWall = median(effectFloor.map((f) => f.wall))
  const ms = (x: number | undefined) => x === undefined ? "-" : x.toFixed(0)
  const ratio = (x: number | undefined, floor: number) => x === undefined ? "-" : `${(x / floor).toFixed(1)}x`
  console.log(`startup: probescope run --exe backend (examples/go-service), ${rounds} rounds (medians), ms`)
  console.log(
    `floors: node -e 0 ${nodeWall.toFixed(0)} ms, ${median(nodeFloor.map((f) => f.cpu)).toFixed(2)} s CPU; ` +
      `import("effect") ${effectWall.toFixed(0)} ms, ${median(effectFloor.map((f) => f.cpu)).toFixed(2)} s CPU`
  )
  const cols = ["exporter", "attached", "ready", "first traced", "CPU to ready", "ready/node", "ready/effect"]
  console.log(cols.map((c, i) => i === 0 ? c.padEnd(9) : c.padStart(13)).join(""))
  for (const c of configs) {
    const s = samples.get(c)!
    const traced = s.map((x) => x.firstTraced).filter((x) => x !== undefined)
    const ready = median(s.map((x) => x.ready))
    console.log([
      c.padEnd(9),
      ms(median(s.map((x) => x.attached))).padStart(13),
      ms(ready).padStart(13),
      (traced.length === 0 ? "-" : `${ms(median(traced))}${traced.length < s.length ? "*" : ""}`).padStart(13),
      `${median(s.map((x) => x.cpuReady)).toFixed(2)} s`.padStart(13),
      ratio(ready, nodeWall).padStart(13),
      ratio(ready, effectWall).padStart(13)
    ].join(""))
  }
  console.log("first traced: - with no exporter to see it; * when some rounds saw none")
  process.exit(0)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
