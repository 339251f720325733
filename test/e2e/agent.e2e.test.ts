/**
 * The agent from the outside, as a user runs it: `bin/probescope run` as a child process exporting OTLP to the real
 * receiver (test/receiver), the example service (examples/go-service) started after the agent so discovery finds
 * it, requests over loopback, and the exact spans the receiver got. Then SIGINT (exit 0, nothing of the agent left in
 * the kernel, the services still serve), SIGKILL (the kernel releases everything), and the CLI's error lines.
 *
 * One Go release per OTLP protocol, so every supported release and every protocol is covered end to end.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { beforeAll } from "vitest"
import { version as probescopeVersion } from "../../src/cli/version.ts"
import { buildExample, exampleCacheDir } from "../instrumentations/fixtures.ts"
import * as Receiver from "../receiver/Receiver.ts"
import type { ReceivedSpan } from "../receiver/Receiver.ts"
import {
  agentEnv,
  agentObjects,
  assertReleased,
  attachedLine,
  cli,
  get,
  root,
  runCli,
  spawnProc,
  startService
} from "./harness.ts"

const cases = [
  { go: "1.25.9", protocol: "http/protobuf" },
  { go: "1.26.8", protocol: "grpc" },
  { go: "1.27.3", protocol: "http/json" }
] as const
/** Older than the supported range. */
const UNSUPPORTED_GO = "1.24.13"

const TRACE = "0af7651916cd43dd8448eb211c80319c"
const PARENT = "b7ad6b7169203331"
/** hello 1 + users/7, users/0, fail, users/5 3 each + fanout 7 (server, 3 clients, 3 backend servers). */
const EXPECTED_SPANS = 20

/** OTLP span flags: W3C sampled, "has is-remote", "parent is remote". */
const SAMPLED = 0x1
const HAS_IS_REMOTE = 0x100
const IS_REMOTE = 0x200

let dirs: Record<string, string> = {}

beforeAll(() => {
  execFileSync("make", ["-C", path.join(root, "bpf")], { stdio: "ignore" })
  dirs = Object.fromEntries([...cases.map((c) => c.go), UNSUPPORTED_GO].map((v) => [v, buildExample(v)]))
}, 900_000)

const one = (spans: ReadonlyArray<ReceivedSpan>, pred: (s: ReceivedSpan) => boolean, what: string) => {
  const found = spans.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} spans`)
  return found[0]!
}

describe.each(cases)("probescope run, Go $go, OTLP $protocol", ({ go, protocol }) => {
  it.live("discovers the services, exports their exact traces, detaches on SIGINT", () =>
    Effect.gen(function*() {
      const frontendExe = path.join(dirs[go]!, "frontend")
      const backendExe = path.join(dirs[go]!, "backend")
      const receiver = yield* Receiver.make()
      const agent = yield* spawnProc(
        cli,
        ["run", "--exe", frontendExe, "--exe", backendExe],
        agentEnv({
          OTEL_EXPORTER_OTLP_ENDPOINT: protocol === "grpc" ? receiver.grpcEndpoint : receiver.httpEndpoint,
          OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
          OTEL_BSP_SCHEDULE_DELAY: "200",
          OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=e2e"
        })
      )
      const ready = yield* agent.line("stderr", /^probescope: ready: (.*); \d+ process\(es\) attached$/m, "120 seconds")
      // Processes of these executables started by other suites on this machine count too: their number is not fixed.
      assert.strictEqual(
        ready[1],
        `probes go_context, nethttp_server, nethttp_client, grpc, database_sql, go_redis, kafka_go, otel_trace, go_panic, ` +
          `openssl_http; watching ${frontendExe}, ${backendExe}`
      )

      // Started after the agent: found through the exec tracepoint, not the start-up scan.
      const backend = yield* startService(backendExe, [])
      const frontend = yield* startService(frontendExe, ["-backend", `http://${backend.addr}`])
      const beAttached = yield* agent.line("stderr", attachedLine(backend.pid))
      const feAttached = yield* agent.line("stderr", attachedLine(frontend.pid))
      // backend makes no HTTP calls: its binary has no Transport.roundTrip, so no client probe there; openssl_http
      // applies to none of these (no libssl), nor grpc, database_sql, go_redis, kafka_go or otel_trace (not linked);
      // go_panic to every Go program.
      const sorted = (list: string) => list.split(", ").sort()
      assert.deepStrictEqual(sorted(beAttached[2]!), ["go_context", "go_panic", "nethttp_server"])
      assert.deepStrictEqual(sorted(feAttached[2]!), ["go_context", "go_panic", "nethttp_client", "nethttp_server"])
      yield* Effect.sleep("300 millis")

      const base = `http://${frontend.addr}`
      const windowStart = BigInt(Date.now()) * 1_000_000n
      assert.strictEqual(yield* get(`${base}/hello`), 200)
      assert.strictEqual(yield* get(`${base}/users/7`), 200)
      assert.strictEqual(yield* get(`${base}/users/0`), 404)
      assert.strictEqual(yield* get(`${base}/fail`), 502)
      assert.strictEqual(yield* get(`${base}/users/5`, { traceparent: `00-${TRACE}-${PARENT}-01` }), 200)
      assert.strictEqual(yield* get(`${base}/fanout`), 200)
      // Date.now() truncates to the millisecond: the window ends at the next one.
      const windowEnd = BigInt(Date.now() + 1) * 1_000_000n

      yield* receiver.waitFor(EXPECTED_SPANS, "60 seconds")
      // Several export intervals more: anything extra would have arrived by now.
      yield* Effect.sleep("1500 millis")
      const spans = yield* receiver.spans
      fs.writeFileSync(path.join(exampleCacheDir, `e2e-spans-${go}.json`), JSON.stringify(spans, null, 2))
      assert.strictEqual(spans.length, EXPECTED_SPANS, "no extra spans")

      // Every span: this run's protocol, the probe's scope, its process's resource, a positive duration, times in
      // the window of the requests.
      // The host as the agent detects it; these processes are in no container (no container.id, no k8s.pod.uid).
      const resourceOf = (name: "frontend" | "backend", pid: number, exe: string) => ({
        "host.name": os.hostname(),
        "host.id": fs.readFileSync("/etc/machine-id", "utf8").trim(),
        "os.type": "linux",
        "service.name": name,
        "process.pid": pid,
        "process.executable.path": fs.realpathSync(exe),
        "process.executable.name": name,
        "process.runtime.name": "go",
        "process.runtime.version": go,
        "telemetry.distro.name": "probescope",
        "telemetry.distro.version": probescopeVersion,
        "deployment.environment.name": "e2e"
      })
      const feResource = resourceOf("frontend", frontend.pid, frontendExe)
      const beResource = resourceOf("backend", backend.pid, backendExe)
      for (const s of spans) {
        assert.strictEqual(s.protocol, protocol)
        const isFe = s.resource["process.pid"] === frontend.pid
        assert.deepStrictEqual(s.resource, isFe ? feResource : beResource, `resource of ${s.name} ${s.spanId}`)
        assert.deepStrictEqual(s.scope, {
          name: s.kind === "SPAN_KIND_SERVER" ? "probescope/nethttp_server" : "probescope/nethttp_client",
          version: probescopeVersion
        })
        const start = BigInt(s.startTimeUnixNano)
        const end = BigInt(s.endTimeUnixNano)
        assert.isTrue(end > start, `${s.name} ${s.spanId}: duration ${end - start} ns`)
        assert.isTrue(
          start >= windowStart && end <= windowEnd,
          `${s.name} ${s.spanId}: ${start}..${end} outside ${windowStart}..${windowEnd}`
        )
        assert.match(s.traceId, /^[0-9a-f]{32}$/)
        assert.match(s.spanId, /^[0-9a-f]{16}$/)
      }
      assert.strictEqual(new Set(spans.map((s) => s.spanId)).size, EXPECTED_SPANS, "distinct span ids")

      const fe = (s: ReceivedSpan) => s.resource["process.pid"] === frontend.pid
      const be = (s: ReceivedSpan) => s.resource["process.pid"] === backend.pid
      const server = (s: ReceivedSpan) => s.kind === "SPAN_KIND_SERVER"
      const client = (s: ReceivedSpan) => s.kind === "SPAN_KIND_CLIENT"
      assert.strictEqual(spans.filter((s) => fe(s) && server(s)).length, 6)
      assert.strictEqual(spans.filter((s) => fe(s) && client(s)).length, 7)
      assert.strictEqual(spans.filter((s) => be(s) && server(s)).length, 7)

      const serverAttrs = (
        route: string,
        urlPath: string,
        status: number,
        port: number,
        peer: ReceivedSpan | undefined,
        extra: Record<string, unknown> = {}
      ) => ({
        "http.request.method": "GET",
        "url.path": urlPath,
        "url.scheme": "http",
        "http.route": route,
        "http.response.status_code": status,
        "server.address": "127.0.0.1",
        "server.port": port,
        "network.peer.address": "127.0.0.1",
        // The peer port is fetch's ephemeral port for the frontend, the client span's local port for the backend.
        "network.peer.port": peer === undefined ? undefined : peer.attributes["network.local.port"],
        "network.protocol.version": "1.1",
        ...extra
      })
      const withPeerPort = (s: ReceivedSpan, expected: Record<string, unknown>) =>
        expected["network.peer.port"] === undefined ?
          { ...expected, "network.peer.port": s.attributes["network.peer.port"] } :
          expected
      const assertServer = (
        s: ReceivedSpan,
        name: string,
        expected: Record<string, unknown>,
        status: { code: string; message: string }
      ) => {
        assert.strictEqual(s.name, name)
        assert.strictEqual(s.kind, "SPAN_KIND_SERVER")
        assert.isNumber(s.attributes["network.peer.port"])
        assert.deepStrictEqual(s.attributes, withPeerPort(s, expected), `${name} attributes`)
        assert.deepStrictEqual(s.status, status, `${name} status`)
      }
      const localPort = (s: ReceivedSpan) => s.attributes["network.local.port"]
      const clientAttrs = (urlPath: string, status: number, local: unknown, extra: Record<string, unknown> = {}) => ({
        "http.request.method": "GET",
        "url.full": `http://${backend.addr}${urlPath}`,
        "server.address": "127.0.0.1",
        "server.port": backend.port,
        "http.response.status_code": status,
        "network.local.port": local,
        ...extra
      })
      const ok = { code: "STATUS_CODE_UNSET", message: "" }
      const error = (code: number) => ({ code: "STATUS_CODE_ERROR", message: `HTTP ${code}` })

      /** A frontend server span with no remote parent starts its own trace. */
      const feRoot = (route: string) => (s: ReceivedSpan) => fe(s) && server(s) && s.attributes["url.path"] === route
      /**
       * The client spans under `parent` (same trace, local parent) and the backend server span under each (same
       * trace, remote parent, its peer port = the client's local port): one trace across two processes.
       */
      const callsUnder = (parent: ReceivedSpan, count: number) => {
        const calls = spans.filter((s) => client(s) && s.parentSpanId === parent.spanId)
        assert.strictEqual(calls.length, count, `client spans under ${parent.name}`)
        return calls.map((call) => {
          assert.isTrue(fe(call), "client spans come from the frontend")
          assert.strictEqual(call.traceId, parent.traceId)
          assert.strictEqual(call.flags, SAMPLED | HAS_IS_REMOTE, "client: local parent")
          assert.isNumber(localPort(call))
          assert.isTrue(
            BigInt(call.startTimeUnixNano) >= BigInt(parent.startTimeUnixNano) &&
              BigInt(call.endTimeUnixNano) <= BigInt(parent.endTimeUnixNano),
            "client within its server span"
          )
          const served = one(spans, (s) => be(s) && s.parentSpanId === call.spanId, `backend span under ${call.spanId}`)
          assert.strictEqual(served.traceId, parent.traceId)
          assert.strictEqual(served.flags, SAMPLED | HAS_IS_REMOTE | IS_REMOTE, "backend: remote parent")
          return { call, served }
        })
      }

      // GET /hello: one server span, a root.
      const hello = one(spans, feRoot("/hello"), "hello")
      assertServer(hello, "GET /hello", serverAttrs("/hello", "/hello", 200, frontend.port, undefined), ok)
      assert.strictEqual(hello.parentSpanId, "")
      assert.strictEqual(hello.flags, SAMPLED | HAS_IS_REMOTE)
      assert.strictEqual(spans.filter((s) => s.traceId === hello.traceId).length, 1)

      // GET /users/7: frontend server → client → backend server, one trace.
      const users7 = one(spans, feRoot("/users/7"), "users/7")
      assertServer(users7, "GET /users/{id}", serverAttrs("/users/{id}", "/users/7", 200, frontend.port, undefined), ok)
      assert.strictEqual(users7.parentSpanId, "")
      const [u7] = callsUnder(users7, 1)
      assert.strictEqual(u7!.call.name, "GET")
      assert.deepStrictEqual(u7!.call.attributes, clientAttrs("/users/7", 200, localPort(u7!.call)))
      assert.deepStrictEqual(u7!.call.status, ok)
      assertServer(
        u7!.served,
        "GET /users/{id}",
        serverAttrs("/users/{id}", "/users/7", 200, backend.port, u7!.call),
        ok
      )
      assert.strictEqual(spans.filter((s) => s.traceId === users7.traceId).length, 3)

      // GET /users/0: 404 is not an error for the servers, but it is for the client.
      const users0 = one(spans, feRoot("/users/0"), "users/0")
      assertServer(users0, "GET /users/{id}", serverAttrs("/users/{id}", "/users/0", 404, frontend.port, undefined), ok)
      const [u0] = callsUnder(users0, 1)
      assert.deepStrictEqual(
        u0!.call.attributes,
        clientAttrs("/users/0", 404, localPort(u0!.call), { "error.type": "404" })
      )
      assert.deepStrictEqual(u0!.call.status, error(404))
      assertServer(
        u0!.served,
        "GET /users/{id}",
        serverAttrs("/users/{id}", "/users/0", 404, backend.port, u0!.call),
        ok
      )

      // GET /fail: backend 500 → client error → frontend 502, all errors.
      const fail = one(spans, feRoot("/fail"), "fail")
      assertServer(
        fail,
        "GET /fail",
        serverAttrs("/fail", "/fail", 502, frontend.port, undefined, { "error.type": "502" }),
        error(502)
      )
      const [f] = callsUnder(fail, 1)
      assert.deepStrictEqual(
        f!.call.attributes,
        clientAttrs("/fail", 500, localPort(f!.call), { "error.type": "500" })
      )
      assert.deepStrictEqual(f!.call.status, error(500))
      assertServer(
        f!.served,
        "GET /fail",
        serverAttrs("/fail", "/fail", 500, backend.port, f!.call, { "error.type": "500" }),
        error(500)
      )

      // GET /users/5 with a traceparent: the fixed trace in both processes, under the caller's span.
      const users5 = one(spans, (s) => fe(s) && server(s) && s.attributes["url.path"] === "/users/5", "users/5")
      assertServer(users5, "GET /users/{id}", serverAttrs("/users/{id}", "/users/5", 200, frontend.port, undefined), ok)
      assert.strictEqual(users5.traceId, TRACE)
      assert.strictEqual(users5.parentSpanId, PARENT)
      assert.strictEqual(users5.flags, SAMPLED | HAS_IS_REMOTE | IS_REMOTE)
      const [u5] = callsUnder(users5, 1)
      assert.deepStrictEqual(u5!.call.attributes, clientAttrs("/users/5", 200, localPort(u5!.call)))
      assertServer(
        u5!.served,
        "GET /users/{id}",
        serverAttrs("/users/{id}", "/users/5", 200, backend.port, u5!.call),
        ok
      )
      assert.deepStrictEqual(
        spans.filter((s) => s.traceId === TRACE).map((s) => s.spanId).sort(),
        [users5.spanId, u5!.call.spanId, u5!.served.spanId].sort()
      )

      // GET /fanout: three calls from goroutines the handler started, each with its backend span, one trace.
      const fanout = one(spans, feRoot("/fanout"), "fanout")
      assertServer(fanout, "GET /fanout", serverAttrs("/fanout", "/fanout", 200, frontend.port, undefined), ok)
      const fan = callsUnder(fanout, 3)
      assert.deepStrictEqual(fan.map(({ call }) => call.attributes["url.full"]).sort(), [
        `http://${backend.addr}/users/1`,
        `http://${backend.addr}/users/2`,
        `http://${backend.addr}/users/3`
      ])
      for (const { call, served } of fan) {
        const p = String(call.attributes["url.full"]).slice(`http://${backend.addr}`.length)
        assert.deepStrictEqual(call.attributes, clientAttrs(p, 200, localPort(call)))
        assertServer(served, "GET /users/{id}", serverAttrs("/users/{id}", p, 200, backend.port, call), ok)
      }
      assert.strictEqual(spans.filter((s) => s.traceId === fanout.traceId).length, 7)
      // Six traces in all, each root a frontend server span.
      assert.strictEqual(new Set(spans.map((s) => s.traceId)).size, 6)

      // SIGINT: detach, flush, exit 0; nothing of the agent left in the kernel.
      const ours = yield* agentObjects(agent.pid)
      agent.child.kill("SIGINT")
      const exit = yield* agent.exit()
      assert.deepStrictEqual(exit, { code: 0, signal: null }, agent.stderr())
      const stderr = agent.stderr()
      // The summary comes after the flush: kernel and consumer drops apart, then what each signal's exporter did.
      assert.include(stderr, "probescope: nethttp_server: 13 records, 0 decode errors, 0 dropped in the kernel, " +
        "0 dropped by the consumer, 0 attach failures\n")
      assert.include(stderr, "probescope: nethttp_client: 7 records, 0 decode errors, 0 dropped in the kernel, " +
        "0 dropped by the consumer, 0 attach failures\n")
      assert.match(stderr, /probescope: spans 20 · otlp \S+: 20 exported, 0 queued, 0 dropped, 0 failed · metric points · otlp \S+: \d+ exported, 0 dropped, 0 failed · log records 0 · otlp \S+: 0 exported, 0 queued, 0 dropped, 0 failed\n/)
      yield* assertReleased(ours)

      // The HTTP metrics go out at shutdown too, under the very resource of the frontend's spans, low-cardinality.
      const fePoints = (yield* receiver.waitForMetrics((ps) =>
        ps.some((p) => p.resource["process.pid"] === frontend.pid && p.name === "http.client.request.duration")
      )).filter((p) => p.resource["process.pid"] === frontend.pid)
      const requests = (name: string) =>
        fePoints.filter((p) => p.name === name).reduce((n, p) => n + (p.count ?? 0), 0)
      assert.strictEqual(requests("http.server.request.duration"), 6)
      assert.strictEqual(requests("http.client.request.duration"), 7)
      for (const p of fePoints) {
        assert.strictEqual(p.protocol, protocol)
        assert.deepStrictEqual(p.resource, feResource)
        assert.notProperty(p.attributes, "url.path")
        assert.notProperty(p.attributes, "url.full")
      }
      const failed = fePoints.find((p) => p.attributes["http.route"] === "/fail")!
      assert.deepStrictEqual([failed.count, failed.attributes["error.type"]], [1, "502"])

      // The agent's own metrics, under its own resource: the last collection has each probe's final counters.
      const own = (yield* receiver.metrics).filter((p) => p.resource["service.name"] === "probescope")
      const last = (name: string, probe: string) =>
        own.filter((p) => p.name === name && p.attributes["probe"] === probe).at(-1)?.value
      assert.strictEqual(last("probescope.probe.records", "nethttp_server"), 13)
      assert.strictEqual(last("probescope.probe.records", "nethttp_client"), 7)
      assert.strictEqual(last("probescope.probe.kernel.dropped", "nethttp_server"), 0)
      assert.strictEqual(last("probescope.probe.consumer.dropped", "nethttp_client"), 0)
      assert.strictEqual(own.find((p) => p.name === "probescope.probe.records")?.resource["process.pid"], agent.pid)

      // The services survive the detach (no uprobe left behind in their code) and nothing more is exported.
      assert.strictEqual(yield* get(`${base}/users/9`), 200)
      assert.strictEqual(yield* get(`${base}/hello`), 200)
      assert.strictEqual(backend.child.exitCode, null)
      assert.strictEqual(frontend.child.exitCode, null)
      yield* Effect.sleep("500 millis")
      assert.strictEqual((yield* receiver.spans).length, EXPECTED_SPANS)
    }))
})

/**
 * Go 1.26 services started BEFORE the agent (it finds them through its start-up scan of /proc), a receiver, and the
 * agent exporting to it with the given batch schedule delay; returns once the agent has attached to both.
 */
const servicesThenAgent = (scheduleDelayMs: string) =>
  Effect.gen(function*() {
    const dir = dirs["1.26.8"]!
    const receiver = yield* Receiver.make()
    const backend = yield* startService(path.join(dir, "backend"), [])
    const frontend = yield* startService(path.join(dir, "frontend"), ["-backend", `http://${backend.addr}`])
    const agent = yield* spawnProc(
      cli,
      ["run", "--exe", path.join(dir, "frontend"), "--exe", path.join(dir, "backend")],
      agentEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.httpEndpoint, OTEL_BSP_SCHEDULE_DELAY: scheduleDelayMs })
    )
    yield* agent.line("stderr", attachedLine(backend.pid), "120 seconds")
    yield* agent.line("stderr", attachedLine(frontend.pid))
    return { agent, backend, frontend, receiver }
  })

describe("probescope run killed with SIGKILL", () => {
  it.live("the kernel releases every program, link and map of the agent; the services keep serving", () =>
    Effect.gen(function*() {
      const { agent, backend, frontend, receiver } = yield* servicesThenAgent("200")
      assert.strictEqual(yield* get(`http://${frontend.addr}/users/3`), 200)
      const spans = yield* receiver.waitFor(3, "60 seconds")
      assert.strictEqual(new Set(spans.map((s) => s.traceId)).size, 1)

      const ours = yield* agentObjects(agent.pid)
      agent.child.kill("SIGKILL")
      assert.deepStrictEqual(yield* agent.exit(), { code: null, signal: "SIGKILL" })
      yield* assertReleased(ours)
      assert.strictEqual(yield* get(`http://${frontend.addr}/users/4`), 200)
      assert.strictEqual(yield* get(`http://${frontend.addr}/fanout`), 200)
      assert.strictEqual(frontend.child.exitCode, null)
      assert.strictEqual(backend.child.exitCode, null)
    }))
})

describe("probescope run stopped with SIGTERM", () => {
  it.live("flushes what is queued, releases everything and exits 0", () =>
    Effect.gen(function*() {
      // A long schedule delay: only the shutdown flush can deliver the spans before the agent exits.
      const { agent, backend, frontend, receiver } = yield* servicesThenAgent("600000")
      assert.strictEqual(yield* get(`http://${frontend.addr}/users/3`), 200)
      yield* Effect.sleep("500 millis")
      // Only this test's services count: other processes of the same executables may run on the machine.
      const mine = (all: ReadonlyArray<ReceivedSpan>) =>
        all.filter((s) => s.resource["process.pid"] === frontend.pid || s.resource["process.pid"] === backend.pid)
      assert.strictEqual(mine(yield* receiver.spans).length, 0)

      const ours = yield* agentObjects(agent.pid)
      agent.child.kill("SIGTERM")
      assert.deepStrictEqual(yield* agent.exit(), { code: 0, signal: null })
      // The receiver acknowledged them before the agent exited; its stdout may reach us a moment later.
      let spans = mine(yield* receiver.spans)
      for (let i = 0; i < 50 && spans.length < 3; i++) {
        yield* Effect.sleep("100 millis")
        spans = mine(yield* receiver.spans)
      }
      assert.strictEqual(spans.length, 3)
      assert.strictEqual(new Set(spans.map((s) => s.traceId)).size, 1)
      yield* assertReleased(ours)
      assert.strictEqual(yield* get(`http://${frontend.addr}/users/4`), 200)
    }))
})

describe("probescope: errors through the CLI", () => {
  /** Exactly one line on stderr, nothing on stdout, exit 1 (2 for a usage error). */
  const assertFails = (args: ReadonlyArray<string>, line: string, code = 1, env: Record<string, string> = {}) =>
    Effect.gen(function*() {
      const result = yield* runCli(args, env)
      assert.deepStrictEqual(result, { code, signal: null, stdout: "", stderr: `probescope: ${line}\n` })
    })

  it.live("run --pid of a process that does not exist", () =>
    Effect.gen(function*() {
      const max = Number(fs.readFileSync("/proc/sys/kernel/pid_max", "utf8"))
      let pid = max - 1
      while (fs.existsSync(`/proc/${pid}`)) pid--
      yield* assertFails(["run", "--pid", String(pid)], `process ${pid} not found`)
    }))

  it.live("run --pid of a process that is not Go: not supported, with each built-in's reason", () =>
    Effect.gen(function*() {
      const sleeper = yield* spawnProc("sleep", ["600"])
      const exe = fs.realpathSync(`/proc/${sleeper.pid}/exe`)
      yield* assertFails(
        ["run", "--pid", String(sleeper.pid)],
        `pid ${sleeper.pid}: ${exe} (not Go) is not supported: ` +
          ["nethttp_server", "nethttp_client", "grpc", "database_sql", "go_redis", "kafka_go", "otel_trace", "go_panic"]
            .map((p) => `${p}: not a Go program (c); `).join("") +
          "openssl_http: shared library libssl.so.3 is not mapped by the process"
      )
    }))

  it.live("run --exe of a file that is not Go, with only Go probes: not a Go program", () =>
    assertFails(
      ["run", "--no-builtins", "--probe", "nethttp_server", "--exe", "/bin/true"],
      "/bin/true: no Go build information (.go.buildinfo): not a Go program"
    ))

  const unsupported = (label: string) => {
    const reason = `Go ${UNSUPPORTED_GO} is outside the supported range >=1.25 <1.28`
    return `${label} (Go ${UNSUPPORTED_GO}) is not supported: ` +
      ["nethttp_server", "nethttp_client", "grpc", "database_sql", "go_redis", "kafka_go", "otel_trace", "go_panic"]
        .map((p) => `${p}: ${reason}; `).join("") +
      "openssl_http: shared library libssl.so.3 is not mapped by the process"
  }

  it.live(`run --exe of a Go ${UNSUPPORTED_GO} program: not supported, with each probe's reason`, () =>
    Effect.gen(function*() {
      const exe = path.join(dirs[UNSUPPORTED_GO]!, "backend")
      yield* assertFails(["run", "--exe", exe], unsupported(exe))
    }))

  it.live(`run --pid of a running Go ${UNSUPPORTED_GO} program: not supported, and the program is untouched`, () =>
    Effect.gen(function*() {
      const old = yield* startService(path.join(dirs[UNSUPPORTED_GO]!, "backend"), [])
      const exe = fs.realpathSync(path.join(dirs[UNSUPPORTED_GO]!, "backend"))
      yield* assertFails(["run", "--pid", String(old.pid)], unsupported(`pid ${old.pid}: ${exe}`))
      assert.strictEqual(yield* get(`http://${old.addr}/users/1`), 200)
    }))

  it.live("run with no selection: the usage line", () =>
    assertFails(["run"], "run needs at least one --pid N, --exe PATH, --port N, --container ID, --cgroup PATH or --all-go", 2))

  it.live("bad agent settings in the environment: one line naming the variable, before anything starts", () =>
    Effect.gen(function*() {
      const exe = path.join(dirs["1.26.8"]!, "backend")
      yield* assertFails(["run", "--exe", exe], "Invalid PROBESCOPE_LINK_GRACE_MS=\"abc\": expected whole milliseconds " +
        "from 0 to 3600000", 1, { PROBESCOPE_LINK_GRACE_MS: "abc" })
      yield* assertFails(["run", "--exe", exe], "Invalid PROBESCOPE_PROBE_LOAD=\"lazy\": expected on-attach or eager", 1, {
        PROBESCOPE_PROBE_LOAD: "lazy"
      })
      yield* assertFails(["run", "--exe", exe], "Invalid PROBESCOPE_RINGBUF_DRAIN_MS=\"0\": expected whole milliseconds " +
        "from 1 to 1000", 1, { PROBESCOPE_RINGBUF_DRAIN_MS: "0" })
      yield* assertFails(["run", "--exe", exe], "Invalid OTEL_RESOURCE_ATTRIBUTES: entry \"garbage==\" has more than " +
        "one \"=\" (percent-encode \"=\" in a value as %3D)", 1, { OTEL_RESOURCE_ATTRIBUTES: "garbage==" })
    }))

  it.live("inspect of a file that is not Go: its native analysis, no Go probe applies, exit 0", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["inspect", "/bin/true"], {})
      assert.strictEqual(result.code, 0)
      assert.strictEqual(result.stderr, "")
      const lines = result.stdout.split("\n")
      assert.strictEqual(lines[0], "/bin/true")
      assert.match(lines[1]!, /^  native c (pie|executable), (stripped|symbols), \d+ functions/)
      assert.strictEqual(lines[2], "  needs libc.so.6")
      assert.include(result.stdout, "  ✗ nethttp_server (instrument): not a Go program (c)")
    }))
})
