/**
 * gRPC through the CLI into a real OpenTelemetry Collector (root): `probescope run --no-builtins --probe grpc
 * --probe nethttp_server --exe <grpc fixture>` (built-ins by name) exporting OTLP
 * over HTTP, with the fixture's gRPC server and its HTTP-fronted client both running that executable. Each call through the front
 * reaches the collector as three spans in one trace (the front's HTTP SERVER span, the gRPC CLIENT span under it,
 * the gRPC SERVER span under that in the other process), with each process's resource; the NotFound call's client
 * span is ERROR and its server span is not; the duration histograms arrive per process when the agent exits.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { Effect } from "effect"
import { beforeAll } from "vitest"
import * as Collector from "../collector/Collector.ts"
import { buildGrpc } from "../instrumentations/fixtures.ts"
import { agentEnv, attachedLine, cli, root, spawnProc } from "./harness.ts"

let fixture = ""

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  fixture = buildGrpc("1.26.8")
}, 600_000)

const start = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const proc = yield* spawnProc(fixture, args)
    const addr = (yield* proc.line("stdout", /^listening on (\S+)$/m, "30 seconds"))[1]!
    return { ...proc, addr, port: Number(addr.split(":").at(-1)) }
  })

const call = (url: string) =>
  Effect.promise(async () => (await (await fetch(url, { signal: AbortSignal.timeout(30_000) })).text()).trim())

describe("gRPC through the CLI and a real collector", () => {
  it.live("unary OK, NotFound and a stream: HTTP span > gRPC client span > gRPC server span, across processes", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const server = yield* start(["server", "127.0.0.1:0"])
      const front = yield* start(["client", server.addr, "127.0.0.1:0"])
      const agent = yield* spawnProc(
        cli,
        [
          "run",
          "--no-builtins",
          // The built-ins by name: grpc, and the net/http server probe for the front's spans.
          "--probe",
          "grpc",
          "--probe",
          "nethttp_server",
          "--exe",
          fixture
        ],
        agentEnv({
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
          OTEL_LOGS_EXPORTER: "none",
          OTEL_METRIC_EXPORT_INTERVAL: "3600000",
          OTEL_BSP_SCHEDULE_DELAY: "200"
        })
      )
      yield* agent.line("stderr", /^probescope: ready: (.*)$/m, "120 seconds")
      for (const p of [server, front]) {
        const attached = attachedLine(p.pid).exec(agent.stderr())
        assert.isNotNull(attached, agent.stderr())
        assert.deepStrictEqual(attached![2]!.split(", ").sort(), ["go_context", "grpc", "nethttp_server"])
      }

      assert.strictEqual(yield* call(`http://${front.addr}/call?m=ok`), "hello probe")
      assert.strictEqual(yield* call(`http://${front.addr}/call?m=notfound`), "NotFound")
      assert.strictEqual(yield* call(`http://${front.addr}/call?m=stream`), "sum 6")

      const spans = yield* collector.receiver.waitFor(9, "30 seconds")
      const cases = [
        { method: "Say", code: 0, client: { code: "STATUS_CODE_UNSET", message: "" } },
        { method: "Find", code: 5, client: { code: "STATUS_CODE_ERROR", message: "NOT_FOUND" } },
        { method: "Count", code: 0, client: { code: "STATUS_CODE_UNSET", message: "" } }
      ] as const
      for (const c of cases) {
        const name = `probescope.test.Echo/${c.method}`
        const cs = spans.filter((s) => s.name === name && s.kind === "SPAN_KIND_CLIENT")
        const ss = spans.filter((s) => s.name === name && s.kind === "SPAN_KIND_SERVER")
        assert.strictEqual(cs.length, 1, `${name} client`)
        assert.strictEqual(ss.length, 1, `${name} server`)
        const http = spans.filter((s) => s.spanId === cs[0]!.parentSpanId)
        assert.strictEqual(http.length, 1, `${name}: the client's parent`)
        assert.strictEqual(http[0]!.name, "GET /call")
        assert.strictEqual(http[0]!.scope.name, "probescope/nethttp_server")
        assert.strictEqual(http[0]!.resource["process.pid"], front.pid)

        const client = cs[0]!
        assert.strictEqual(client.scope.name, "probescope/grpc")
        assert.strictEqual(client.resource["process.pid"], front.pid)
        assert.strictEqual(client.traceId, http[0]!.traceId)
        assert.deepStrictEqual(client.status, c.client)
        assert.deepStrictEqual(client.attributes, {
          "rpc.system": "grpc",
          "rpc.service": "probescope.test.Echo",
          "rpc.method": c.method,
          "rpc.grpc.status_code": c.code,
          "server.address": "127.0.0.1",
          "server.port": server.port,
          "network.peer.address": "127.0.0.1",
          "network.peer.port": server.port
        })

        const served = ss[0]!
        assert.strictEqual(served.scope.name, "probescope/grpc")
        assert.strictEqual(served.resource["process.pid"], server.pid)
        assert.strictEqual(served.traceId, http[0]!.traceId)
        assert.strictEqual(served.parentSpanId, client.spanId)
        assert.deepStrictEqual(served.status, { code: "STATUS_CODE_UNSET", message: "" })
        assert.deepStrictEqual(served.attributes, {
          "rpc.system": "grpc",
          "rpc.service": "probescope.test.Echo",
          "rpc.method": c.method,
          "rpc.grpc.status_code": c.code,
          "server.address": "127.0.0.1",
          "server.port": server.port,
          "network.peer.address": "127.0.0.1",
          "network.peer.port": served.attributes["network.peer.port"]
        })
      }

      // The metrics are exported once, when the agent exits.
      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
      const points = (yield* collector.receiver.waitForMetrics(
        (ps) => ps.filter((p) => p.name.startsWith("rpc.")).length >= 6,
        "20 seconds"
      )).filter((p) => p.name.startsWith("rpc."))
      assert.deepStrictEqual(
        points.map((p) => [p.name, p.type, p.unit, p.resource["process.pid"], p.attributes["rpc.method"], p.count])
          .sort((a, b) => String(a).localeCompare(String(b))),
        [
          ["rpc.client.call.duration", "histogram", "s", front.pid, "Count", 1],
          ["rpc.client.call.duration", "histogram", "s", front.pid, "Find", 1],
          ["rpc.client.call.duration", "histogram", "s", front.pid, "Say", 1],
          ["rpc.server.call.duration", "histogram", "s", server.pid, "Count", 1],
          ["rpc.server.call.duration", "histogram", "s", server.pid, "Find", 1],
          ["rpc.server.call.duration", "histogram", "s", server.pid, "Say", 1]
        ]
      )
      const find = points.find((p) => p.name === "rpc.client.call.duration" && p.attributes["rpc.method"] === "Find")!
      assert.deepStrictEqual(find.attributes, {
        "rpc.system": "grpc",
        "rpc.service": "probescope.test.Echo",
        "rpc.method": "Find",
        "rpc.grpc.status_code": 5,
        "server.address": "127.0.0.1",
        "server.port": server.port
      })
    }).pipe(Effect.scoped), 300_000)
})
