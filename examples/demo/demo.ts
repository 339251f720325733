/**
 * The README's main job: build the example Go services, start the shop's servers (Redis and a single-node Apache
 * Kafka broker, each of its own on loopback), start the agent FIRST (so discovery sees the services start), start
 * the services, drive a few requests, stop the agent with SIGINT (it detaches, flushes and exits 0) and let its
 * console exporters print the traces as trees, a panic's log records and, last, the metrics tables.
 *
 * One checkout request crosses every instrumentation: frontend (HTTP server, HTTP client) → orders (HTTP server, a
 * span made by hand with the OpenTelemetry Go API, a gRPC client call, a Kafka message) → inventory (gRPC server,
 * Redis, SQLite through database/sql) and, in inventory's consumer, the Kafka message read and the SQL insert it leads
 * to — one trace.
 *
 * Run: `bash scripts/demo.sh` (does the set-up) or, once set up, `node_modules/.bin/node examples/demo/demo.ts`. The
 * first run copies Kafka's jars with Maven (about 15 s) into test/.cache/kafka.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import { Effect, Exit, Scope } from "effect"
import * as Broker from "../../test/kafka/Broker.ts"
import * as Redis from "../../test/servers/Redis.ts"

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
say(`building the example services (examples/go-service and its shop) into ${bin}`)
for (const [dir, name] of [["", "backend"], ["", "frontend"], ["shop", "orders"], ["shop", "inventory"]] as const) {
  execFileSync("go", ["build", "-o", path.join(bin, name), `./${name}`], {
    cwd: path.join(root, "examples", "go-service", dir),
    stdio: "inherit"
  })
}

const children: Array<ChildProcess> = []
const cleanup = () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM")
  fs.rmSync(bin, { recursive: true, force: true })
}
process.on("exit", cleanup)

// The shop's servers live in a scope of their own: closing it stops them (and removes their folders).
const servers = Effect.runSync(Scope.make())
const stopServers = () => Effect.runPromise(Scope.close(servers, Exit.void))
say("starting Redis and a Kafka broker (KRaft, single node) on 127.0.0.1 for the shop")
const [redisPort, broker] = await Effect.runPromise(
  Effect.all([Redis.start, Broker.start()], { concurrency: 2 }).pipe(Scope.provide(servers))
).catch(async (e) => {
  await stopServers()
  throw e
})
say(`redis on 127.0.0.1:${redisPort}; kafka on ${broker.bootstrap} (ready in ${(broker.startMs / 1000).toFixed(1)} s)`)

const services = ["frontend", "backend", "orders", "inventory"]
say(`starting the agent: probescope run ${services.map((s) => `--exe ${s}`).join(" ")} (console exporters)`)
const agent = spawn(
  path.join(root, "bin", "probescope"),
  ["run", ...services.flatMap((s) => ["--exe", path.join(bin, s)])],
  {
    stdio: ["ignore", "inherit", "pipe"],
    env: {
      ...process.env,
      OTEL_TRACES_EXPORTER: "console",
      // One batch, flushed when the agent stops: each trace prints as one tree, the Kafka consumer's span (which
      // ends after the request that produced the message) included.
      OTEL_BSP_SCHEDULE_DELAY: "600000",
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

say("starting inventory, orders, backend and frontend on 127.0.0.1 (the agent discovers and attaches to them)")
/** Starts one of the services and waits for its "listening on ADDR" line; its address. */
const service = async (name: string, args: ReadonlyArray<string>) => {
  const child = spawn(path.join(bin, name), [...args], { stdio: ["ignore", "pipe", "inherit"] })
  children.push(child)
  return { child, addr: (await waitForLine(child, "stdout", /^listening on (.+)$/, 30_000))[1]! }
}
const inventory = await service("inventory", [
  "-grpc", "127.0.0.1:0", "-db", path.join(bin, "inventory.db"), "-redis", `127.0.0.1:${redisPort}`,
  "-kafka", broker.bootstrap
])
const orders = await service("orders", ["-addr", "127.0.0.1:0", "-inventory", inventory.addr, "-kafka", broker.bootstrap])
const backendAddr = (await service("backend", ["-addr", "127.0.0.1:0"])).addr
const frontendAddr = (await service("frontend", [
  "-addr", "127.0.0.1:0", "-backend", `http://${backendAddr}`, "-orders", `http://${orders.addr}`
])).addr
// Attaching takes a few milliseconds after exec; give discovery that time before the first request.
await new Promise((r) => setTimeout(r, 500))

const requests: Array<[string, Record<string, string>]> = [
  ["/hello", {}],
  ["/users/7", {}],
  ["/users/0", {}],
  ["/fanout", {}],
  ["/fail", {}],
  ["/users/42", { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }],
  // The shop: one trace through HTTP, a manual span, gRPC, Redis, SQL and Kafka (201), and one out of stock (409:
  // the gRPC call fails NotFound, the manual span ends with status Error).
  ["/checkout/widget", {}],
  ["/checkout/gadget", {}]
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

// inventory's consumer reads the order's message (its group joins the topic first) and records the shipment.
const shipped = await waitForLine(inventory.child, "stdout", /^shipped (.+)$/, 30_000).then(
  (m) => `inventory's consumer read the order for ${m[1]} from Kafka and recorded its shipment`,
  (e: Error) => `inventory's consumer did not report the order: ${e.message}`
)
say(shipped)
await new Promise((r) => setTimeout(r, 1000))
say("stopping the agent with SIGINT: it detaches every probe, flushes traces and metrics and exits")
const code = await new Promise<number | null>((resolve) => {
  agent.once("exit", (c) => resolve(c))
  agent.kill("SIGINT")
})
say(`agent exited with code ${code}`)
// The services' pipes would keep this process alive: stop them and the servers, and leave.
for (const c of children) if (c.exitCode === null) c.kill("SIGTERM")
await stopServers()
process.exit(code ?? 1)
