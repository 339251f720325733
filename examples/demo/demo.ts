/**
 * The README's main job: build the example Go service, start the agent FIRST (so discovery sees the services
 * start), start backend and frontend on loopback, drive a few requests, stop the agent with SIGINT (it detaches,
 * flushes and exits 0) and let its console exporters print the traces as trees, a panic's log records and, last, the
 * HTTP metrics table (requests, median bucket and errors per process).
 *
 * Run: `bash scripts/demo.sh` (does the set-up) or, once set up, `node_modules/.bin/node examples/demo/demo.ts`.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
const say = (line: string) => process.stderr.write(`\x1b[1m[demo]\x1b[0m ${line}\n`)

/** Resolves with the first line of `stream` matching `pattern`, or rejects after `ms`. */
const waitForLine = (child: ChildProcess, stream: "stdout" | "stderr", pattern: RegExp, ms: number) =>
  new Promise<RegExpExecArray>((resolve, reject) => {
    const rl = readline.createInterface({ input: child[stream]! })
    const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${ms} ms`)), ms)
    rl.on("line", (line) => {
      const m = pattern.exec(line)
      if (m) {
        clearTimeout(timer)
        resolve(m)
      }
    })
    child.once("exit", (code) => reject(new Error(`process exited (${code}) before printing ${pattern}`)))
  })

const bin = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-demo-"))
say(`building the example service (examples/go-service) into ${bin}`)
for (const name of ["backend", "frontend"]) {
  execFileSync("go", ["build", "-o", path.join(bin, name), `./${name}`], {
    cwd: path.join(root, "examples", "go-service"),
    stdio: "inherit"
  })
}

const children: Array<ChildProcess> = []
const cleanup = () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM")
  fs.rmSync(bin, { recursive: true, force: true })
}
process.on("exit", cleanup)

say("starting the agent: probescope run --probe go_panic --exe frontend --exe backend (console exporters for traces, metrics and logs)")
const agent = spawn(
  path.join(root, "bin", "probescope"),
  // go_panic runs when named: it reports the frontend's panicking handler below.
  ["run", "--probe", "go_panic", "--exe", path.join(bin, "frontend"), "--exe", path.join(bin, "backend")],
  {
    stdio: ["ignore", "inherit", "pipe"],
    env: {
      ...process.env,
      OTEL_TRACES_EXPORTER: "console",
      OTEL_BSP_SCHEDULE_DELAY: "500",
      // Printed once, at shutdown: the interval is longer than the demo.
      OTEL_METRICS_EXPORTER: "console",
      OTEL_METRIC_EXPORT_INTERVAL: "600000",
      // Log records (a Go panic, say) as one line each.
      OTEL_LOGS_EXPORTER: "console"
    }
  }
)
children.push(agent)
agent.stderr!.on("data", (chunk: Buffer) => process.stderr.write(chunk))
await waitForLine(agent, "stderr", /^probescope: ready/, 60_000)

say("starting backend and frontend on 127.0.0.1 (the agent discovers and attaches to them)")
const backend = spawn(path.join(bin, "backend"), ["-addr", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] })
children.push(backend)
const backendAddr = (await waitForLine(backend, "stdout", /^listening on (.+)$/, 10_000))[1]
const frontend = spawn(
  path.join(bin, "frontend"),
  ["-addr", "127.0.0.1:0", "-backend", `http://${backendAddr}`],
  { stdio: ["ignore", "pipe", "inherit"] }
)
children.push(frontend)
const frontendAddr = (await waitForLine(frontend, "stdout", /^listening on (.+)$/, 10_000))[1]
// Attaching takes a few milliseconds after exec; give discovery that time before the first request.
await new Promise((r) => setTimeout(r, 500))

const requests: Array<[string, Record<string, string>]> = [
  ["/hello", {}],
  ["/users/7", {}],
  ["/users/0", {}],
  ["/fanout", {}],
  ["/fail", {}],
  ["/users/42", { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }]
]
for (const [route, headers] of requests) {
  const res = await fetch(`http://${frontendAddr}${route}`, { headers })
  await res.arrayBuffer()
  say(`GET ${route}${headers.traceparent ? " (with an incoming traceparent)" : ""} -> ${res.status}`)
}
// The handler panics: net/http recovers and drops the connection, so there is no status to print.
const panicked = await fetch(`http://${frontendAddr}/panic`).then(
  (res) => `${res.status}`,
  () => "connection closed (the handler panicked; the panic shows below as log records and a failed span)"
)
say(`GET /panic -> ${panicked}`)

await new Promise((r) => setTimeout(r, 1000))
say("stopping the agent with SIGINT: it detaches every probe, flushes traces and metrics and exits")
const code = await new Promise<number | null>((resolve) => {
  agent.once("exit", (c) => resolve(c))
  agent.kill("SIGINT")
})
say(`agent exited with code ${code}`)
// The services' pipes would keep this process alive: stop them and leave.
process.exit(code ?? 1)
