/**
 * How long `probescope run --exe <backend>` takes from launch to work, for the CLI started from its V8 snapshot
 * (dist/cli/probescope.blob, what bin/probescope runs when the build made one: scripts/build-snapshot.mjs), the
 * bundled CLI (dist/cli/probescope.mjs, what it runs otherwise; forced here with PROBESCOPE_SNAPSHOT=0) and the
 * unbundled one (dist/cli/main.js, which it runs for a command line that loads a user's probe module; forced here
 * with PROBESCOPE_BUNDLE=0), interleaved in the same run: launch → the first
 * "pid N: attached" line, launch → the "ready" line, and launch → the first traced request (requests GET /users/<n>
 * are sent every 5 ms from launch on; the first traced one is the lowest n that shows up in the console output or at
 * the OTLP sink, so the exporters' batch delay is not counted), and the agent's CPU seconds until ready (its children
 * included). Exporters: none, console (JSON lines), OTLP http/protobuf to a local Node HTTP sink that answers 200.
 * `probescope --version` (the CLI loaded, nothing done) is timed per build, and `node -e 0` and
 * `node -e 'await import("effect")'` are measured alongside as floors; the table shows the snapshot's and the
 * bundle's ratio to the unbundled CLI and to the goal (issue 12: launch → attached ≤ 250 ms).
 *
 *   node_modules/.bin/node bench/startup.ts [rounds, default 5]
 *
 * BENCH_BEFORE=<another checkout's bin/probescope> (e.g. a clone of an older commit, built) adds it as one more
 * build, "before", started as its bin/probescope starts by default, in the same rounds; BENCH_PROBESCOPE=<another checkout's bin/probescope> measures that one instead
 * of this checkout's (a build without a bundle runs dist/cli/main.js either way). Root is needed (uprobes). Rounds
 * interleave the configurations; the table shows medians. Fails when a run sees no "attached" line, or this checkout
 * has no bundled CLI.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import * as readline from "node:readline"
import { buildExample } from "../test/instrumentations/fixtures.ts"
import * as Goals from "./internal/goals.ts"

const root = path.resolve(import.meta.dirname, "..")
const rounds = Number(process.argv[2] ?? 5)
/** Another checkout's bin/probescope (e.g. a worktree of an older commit), for before/after figures. */
const bin = process.env["BENCH_PROBESCOPE"] ?? path.join(root, "bin", "probescope")
const before = process.env["BENCH_BEFORE"]
/** Issue 12's goal for launch → attached, in ms. */
const goalMs = 250
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
const floor = (
  args: ReadonlyArray<string>,
  command = process.execPath,
  env: Record<string, string | undefined> = {}
) => {
  const quoted = args.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ")
  const t0 = performance.now()
  const stat = execFileSync("sh", ["-c", `'${command}' ${quoted} >/dev/null; cat /proc/$$/stat`], {
    env: withEnv(env)
  }).toString()
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

type Exporter = "none" | "console" | "otlp"
type Build = "snapshot" | "bundled" | "unbundled" | "before"

/**
 * How each build is started: the snapshot and "before" as bin/probescope starts them by default, the bundle without
 * the snapshot, the unbundled CLI without the bundle.
 */
const launchEnv = (build: Build): Record<string, string | undefined> => ({
  PROBESCOPE_BUNDLE: build === "unbundled" ? "0" : undefined,
  PROBESCOPE_SNAPSHOT: build === "bundled" ? "0" : undefined
})

/** `process.env` with `changes` applied (undefined removes a variable). */
const withEnv = (changes: Record<string, string | undefined>): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries({ ...process.env, ...changes })) if (v !== undefined) env[k] = v
  return env
}
interface Config {
  readonly exporter: Exporter
  readonly build: Build
}

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

  const once = async ({ exporter: config, build }: Config): Promise<Sample> => {
    sink.bodies.length = 0
    let stdout = ""
    const sent: Array<number> = []
    const t0 = performance.now()
    const child = spawn(build === "before" ? before! : bin, ["run", "--exe", exe], {
      stdio: ["ignore", "pipe", "pipe"],
      env: withEnv({
        ...launchEnv(build),
        OTEL_TRACES_EXPORTER: config,
        OTEL_METRICS_EXPORTER: "none",
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY: "50",
        PROBESCOPE_CONSOLE_FORMAT: "jsonl"
      })
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

  /**
   * One run in which bin/probescope did not rebuild dist/ (in a checkout it does when src/ is newer: someone editing
   * meanwhile); a run that did is measured again, at most 5 times.
   */
  const stamps = [bin, ...(before === undefined ? [] : [before])].map((b) =>
    path.join(path.dirname(path.dirname(fs.realpathSync(b))), "dist", ".build-stamp")
  )
  const stampTime = () => stamps.map((s) => fs.statSync(s, { throwIfNoEntry: false })?.mtimeMs).join()
  const unbuilt = async (c: Config): Promise<Sample> => {
    for (let attempt = 1;; attempt++) {
      const before = stampTime()
      const sample = await once(c)
      if (stampTime() === before || attempt === 5) return sample
      console.error(`startup: dist/ was rebuilt during a run (${key(c)}): measured again`)
    }
  }
  const exporters: ReadonlyArray<Exporter> = ["none", "console", "otlp"]
  // The snapshot when the measured checkout's build made one (scripts/build-snapshot.mjs says why it did not).
  const blob = path.join(path.dirname(path.dirname(fs.realpathSync(bin))), "dist", "cli", "probescope.blob")
  const hasSnapshot = fs.existsSync(blob)
  const builds: ReadonlyArray<Build> = [
    ...(hasSnapshot ? ["snapshot" as const] : []),
    "bundled",
    "unbundled",
    ...(before === undefined ? [] : ["before" as const])
  ]
  const configs = exporters.flatMap((exporter) => builds.map((build) => ({ exporter, build })))
  const key = (c: Config) => `${c.exporter}/${c.build}`
  const samples = new Map<string, Array<Sample>>(configs.map((c) => [key(c), []]))
  const nodeFloor: Array<{ wall: number; cpu: number }> = []
  const effectFloor: Array<{ wall: number; cpu: number }> = []
  const versionRuns = new Map(builds.map((b) => [b, [] as Array<{ wall: number; cpu: number }>]))
  // Page cache, the dist/ build check, V8's code cache (dist/.compile-cache) for both builds.
  for (const build of builds) await once({ exporter: "none", build })
  if (process.env["BENCH_PROBESCOPE"] === undefined && !fs.existsSync(path.join(root, "dist/cli/probescope.mjs"))) {
    throw new Error("no dist/cli/probescope.mjs: npm run build:ts bundles the CLI when esbuild is installed")
  }
  for (let i = 0; i < rounds; i++) {
    nodeFloor.push(floor(["-e", "0"]))
    effectFloor.push(floor(["--input-type=module", "-e", "await import(\"effect\")"]))
    // The CLI loaded and nothing done: what the bundle is for, without the agent's own work.
    for (const build of builds) {
      versionRuns.get(build)!.push(
        floor(["--version"], build === "before" ? before! : bin, launchEnv(build))
      )
    }
    for (const c of configs) samples.get(key(c))!.push(await unbuilt(c))
  }
  backend.kill("SIGTERM")

  const nodeWall = median(nodeFloor.map((f) => f.wall))
  const effectWall = median(effectFloor.map((f) => f.wall))
  const ms = (x: number | undefined) => x === undefined ? "-" : x.toFixed(0)
  const ratio = (x: number | undefined, floor: number | undefined) =>
    x === undefined || floor === undefined ? "-" : `${(x / floor).toFixed(2)}x`
  console.log(`startup: probescope run --exe backend (examples/go-service), ${rounds} rounds (medians), ms`)
  console.log(
    `floors: node -e 0 ${nodeWall.toFixed(0)} ms, ${median(nodeFloor.map((f) => f.cpu)).toFixed(2)} s CPU; ` +
      `import("effect") ${effectWall.toFixed(0)} ms, ${median(effectFloor.map((f) => f.cpu)).toFixed(2)} s CPU`
  )
  console.log(
    `probescope --version: ${
      builds.map((b) => {
        const runs = versionRuns.get(b)!
        const cpu = median(runs.map((r) => r.cpu))
        return `${b} ${median(runs.map((r) => r.wall)).toFixed(0)} ms, ${cpu.toFixed(2)} s CPU`
      }).join("; ")
    }`
  )
  const cols = ["exporter", "build", "attached", "ready", "first traced", "CPU to ready", "vs unbundled",
    ...(before === undefined ? [] : ["vs before"]), "vs goal", "ready/node"]
  console.log(cols.map((c, i) => i < 2 ? c.padEnd(11) : c.padStart(13)).join(""))
  const medians = (c: Config) => {
    const s = samples.get(key(c))!
    const traced = s.map((x) => x.firstTraced).filter((x) => x !== undefined)
    return {
      attached: median(s.map((x) => x.attached)),
      ready: median(s.map((x) => x.ready)),
      traced: traced.length === 0 ? "-" : `${ms(median(traced))}${traced.length < s.length ? "*" : ""}`,
      cpu: median(s.map((x) => x.cpuReady))
    }
  }
  for (const c of configs) {
    const m = medians(c)
    const unbundled = medians({ ...c, build: "unbundled" })
    const old = before === undefined ? undefined : medians({ ...c, build: "before" })
    console.log([
      c.exporter.padEnd(11),
      c.build.padEnd(11),
      ms(m.attached).padStart(13),
      ms(m.ready).padStart(13),
      m.traced.padStart(13),
      `${m.cpu.toFixed(2)} s`.padStart(13),
      (c.build === "bundled" || c.build === "snapshot" ? ratio(m.attached, unbundled.attached) : "").padStart(13),
      ...(old === undefined ? [] : [(c.build === "before" ? "" : ratio(m.attached, old.attached)).padStart(13)]),
      ratio(m.attached, goalMs).padStart(13),
      ratio(m.ready, nodeWall).padStart(13)
    ].join(""))
  }
  console.log(
    `vs unbundled: attached / unbundled attached; ${before === undefined ? "" : `vs before: attached / ` +
      `attached of ${before}; `}vs goal: attached / ${goalMs} ms (issue 12)`
  )
  console.log("first traced: - with no exporter to see it; * when some rounds saw none")
  // Issue #12's goal for bench/run.ts's table: what bin/probescope runs (the snapshot, else the bundle) exporting over
  // OTLP, against the unbundled CLI of the same run.
  const shipped = medians({ exporter: "otlp", build: hasSnapshot ? "snapshot" : "bundled" })
  Goals.record("startup", {
    goal: "launch → attached, example backend, OTLP (bin/probescope)",
    figure: shipped.attached,
    unit: "ms",
    target: goalMs,
    baseline: { name: "unbundled CLI, same run", value: medians({ exporter: "otlp", build: "unbundled" }).attached },
    note: `${rounds} rounds, medians; node -e 0 ${nodeWall.toFixed(0)} ms in the same run`
  })
  process.exit(0)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
