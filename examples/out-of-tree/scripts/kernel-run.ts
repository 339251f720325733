/**
 * `npm run test:kernel` (root): the probe against the real service through the CLI, as a user runs it.
 *
 * Starts service/service, then `probescope run --probe ./src/CacheProbe.ts --exe service/service` with the console
 * exporter printing one JSON object per span, sends requests until a `Cache.Get` span arrives whose parent is the
 * net/http server span of its request (same trace, parent id = the server span's id), stops the agent with SIGINT
 * and checks it exits 0. Bounded: 90 s in all. `npm run build:bpf` and `npm run build:service` come first.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as Path from "node:path"
import * as Readline from "node:readline"

const root = Path.resolve(import.meta.dirname, "..")
const probescope = Path.join(root, "node_modules", ".bin", "probescope")
const service = Path.join(root, "service", "service")
const say = (line: string) => console.error(`[test:kernel] ${line}`)
const fail = (line: string): never => {
  say(`FAILED: ${line}`)
  process.exit(1)
}

if (process.getuid?.() !== 0) fail("needs root (BPF programs and uprobes)")
setTimeout(() => fail("did not finish within 90 s"), 90_000).unref()

// `run --probe` is how the CLI loads a probe of one's own; a probescope from before it cannot run this test.
const help = spawnSync(probescope, ["run", "--help"], { encoding: "utf8" })
if (!`${help.stdout}${help.stderr}`.includes("--probe")) {
  say("SKIPPED: this probescope has no `run --probe` (it came with the Agent layer); nothing was run")
  process.exit(0)
}

const children: Array<ChildProcess> = []
process.on("exit", () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL")
})

/** Resolves with the first line of `stream` matching `pattern`. */
const firstLine = (child: ChildProcess, stream: "stdout" | "stderr", pattern: RegExp) =>
  new Promise<RegExpExecArray>((resolve, reject) => {
    Readline.createInterface({ input: child[stream]! }).on("line", (line) => {
      const m = pattern.exec(line)
      if (m) resolve(m)
    })
    child.once("exit", (code) => reject(new Error(`exited (${code}) before printing ${pattern}`)))
  })

say("starting service/service on 127.0.0.1")
const svc = spawn(service, ["-addr", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] })
children.push(svc)
const addr = (await firstLine(svc, "stdout", /^listening on (\S+)/).catch((e) => fail(`service: ${e.message}`)))[1]

say(`starting: probescope run --probe ./src/CacheProbe.ts --exe ${Path.relative(root, service)}`)
const agent = spawn(probescope, ["run", "--probe", "./src/CacheProbe.ts", "--exe", service], {
  cwd: root,
  stdio: ["ignore", "pipe", "pipe"],
  env: {
    ...process.env,
    OTEL_TRACES_EXPORTER: "console",
    PROBESCOPE_CONSOLE_FORMAT: "jsonl",
    OTEL_BSP_SCHEDULE_DELAY: "200",
    OTEL_METRICS_EXPORTER: "none"
  }
})
children.push(agent)
const stderr: Array<string> = []
Readline.createInterface({ input: agent.stderr! }).on("line", (line) => {
  stderr.push(line)
  process.stderr.write(`  agent: ${line}\n`)
})

interface Span {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly kind: string
  readonly attributes: Record<string, unknown>
}
const spans: Array<Span> = []
Readline.createInterface({ input: agent.stdout! }).on("line", (line) => {
  try {
    spans.push(JSON.parse(line) as Span)
  } catch {
    // Not a span line (the console exporter prints only spans in jsonl; anything else is not ours to check).
  }
})

await new Promise<void>((resolve, reject) => {
  const poll = setInterval(() => {
    if (stderr.some((l) => l.startsWith("probescope: ready"))) {
      clearInterval(poll)
      resolve()
    }
  }, 50)
  agent.once("exit", (code) => reject(new Error(`the agent exited (${code}) before it was ready`)))
}).catch((e) => fail(e.message))

/** A Cache.Get span and the server span it is the child of, once both were exported. */
const childOfServer = () => {
  for (const get of spans.filter((s) => s.name === "Cache.Get" && s.attributes["cache.key"] === "alpha")) {
    const server = spans.find((s) => s.kind === "server" && s.spanId === get.parentSpanId && s.traceId === get.traceId)
    if (server !== undefined) return { get, server }
  }
  return undefined
}

say(`sending GET /items/alpha and /items/nope to ${addr} until the spans arrive`)
let found: ReturnType<typeof childOfServer>
for (let i = 0; i < 80 && found === undefined; i++) {
  for (const key of ["alpha", "nope"]) await fetch(`http://${addr}/items/${key}`).then((r) => r.text())
  await new Promise((r) => setTimeout(r, 250))
  found = childOfServer()
}
if (found === undefined) {
  fail(`no Cache.Get span under a server span among ${spans.length} span(s): ${JSON.stringify(spans.slice(0, 4))}`)
}
const miss = spans.find((s) => s.name === "Cache.Get" && s.attributes["cache.key"] === "nope")

say("stopping the agent (SIGINT)")
agent.kill("SIGINT")
const code = await new Promise<number | null>((resolve) => agent.once("exit", (c) => resolve(c)))
if (code !== 0) fail(`the agent exited ${code} after SIGINT`)
console.log(
  `ok: ${found!.get.name} (cache.key=alpha, cache.hit=${found!.get.attributes["cache.hit"]}) ` +
    `span ${found!.get.spanId} ` +
    `is the child of the server span ${found!.server.spanId} "${found!.server.name}" in trace ${found!.get.traceId}; ` +
    `miss recorded: ${miss?.attributes["cache.hit"] === false}`
)
process.exit(0)
