/**
 * The TCP metrics probe end to end (root): the probe on the real kernel through the Manager, the real telemetry layer
 * exporting OTLP to a real OpenTelemetry Collector (test/collector), and the metric points as they come out of the
 * collector: names, units, kinds, values, attributes and each process's resource.
 *
 * A selected Python server accepts two connections of a selected Python client, which then connects once to a port
 * nobody listens on. The metrics are exported once, at shutdown (a one-hour interval), so each series is one
 * cumulative point. Twice: composed as a library (Manager + telemetry layer), and as a user runs it,
 * `probescope run --no-builtins --probe tcp_metrics --pid <server>` (the built-in, by name).
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { ConfigProvider, Context, Effect, Layer, Schedule } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as TcpMetrics from "../../src/instrumentations/TcpMetrics.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as TargetEvent from "../../src/manager/TargetEvent.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as Collector from "../collector/Collector.ts"
import type { ReceivedMetricPoint } from "../receiver/Receiver.ts"
import { finish, makeNetns, type Netns, type Program } from "../instrumentations/tcpPrograms.ts"
import { agentEnv, cli, spawnProc } from "./harness.ts"

const root = path.resolve(import.meta.dirname, "../..")
let net: Netns | undefined

beforeAll(async () => {
  execFileSync("make", ["-C", path.join(root, "bpf"), "out/tcp_metrics.bpf.o"], { stdio: "ignore" })
  net = makeNetns("tcp-e2e")
  // The first build compiles the collector (minutes on a 2-core machine): outside the test's own timeout.
  await Effect.runPromise(Collector.build)
}, 45 * 60_000)

afterAll(() => net?.remove())

/** The agent's pipeline: the probe through the Manager on the real kernel, telemetry configured from `env`. */
const agent = (env: Record<string, string>) =>
  ManagerM.layer.pipe(
    Layer.provide(TcpMetrics.TcpMetrics.layer),
    Layer.provideMerge(Layer.mergeAll(
      BpfLive.layer,
      ProbeTest.layerTargets,
      TracingConfig.layer(TracingConfig.defaultSampler),
      Telemetry.layer.pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))
    ))
  )

/** Select a process and give it the resource the agent would (here: its service name). */
const select = (p: Program, serviceName: string) =>
  Effect.gen(function*() {
    const resources = yield* ProcessResources.ProcessResources
    yield* resources.register(p.pid, { exe: "/usr/bin/python3", goVersion: "", serviceName })
    const manager = yield* Manager
    yield* manager.handle(TargetEvent.TargetEvent.Started({
      target: ProbeTest.target({ pid: p.pid, language: "native", exe: "/usr/bin/python3" })
    }))
  })

const point = (points: ReadonlyArray<ReceivedMetricPoint>, name: string, pid: number) => {
  const found = points.filter((p) => p.name === name && p.resource["process.pid"] === pid)
  assert.strictEqual(found.length, 1, `${name} of ${pid}: ${found.length} points`)
  return found[0]!
}

/** The seven points of the scenario: values, kinds, units, attributes, the histogram's bounds. */
const assertPoints = (
  all: ReadonlyArray<ReceivedMetricPoint>,
  pids: { readonly client: number; readonly server: number; readonly port: number; readonly refused: number }
) => {
  const points = all.filter((p) => p.name.startsWith("tcp."))
  assert.deepStrictEqual(
    points.map((p) => [p.name, p.resource["process.pid"], p.value ?? p.count]).sort(),
    [
      ["tcp.connection.closed", pids.client, 2],
      ["tcp.connection.closed", pids.server, 2],
      ["tcp.connection.duration", pids.client, 2],
      ["tcp.connection.duration", pids.server, 2],
      ["tcp.connection.failed", pids.client, 1],
      ["tcp.connection.opened", pids.client, 2],
      ["tcp.connection.opened", pids.server, 2]
    ].sort()
  )
  const base = { "network.transport": "tcp", "network.type": "ipv4" }
  const clientSide = { ...base, "tcp.connection.side": "client", "server.port": pids.port }
  const serverSide = { ...base, "tcp.connection.side": "server", "server.port": pids.port }

  const opened = point(points, "tcp.connection.opened", pids.client)
  assert.deepStrictEqual(
    [opened.type, opened.unit, opened.temporality, opened.attributes],
    ["sum", "{connection}", "AGGREGATION_TEMPORALITY_CUMULATIVE", clientSide]
  )
  assert.deepStrictEqual(point(points, "tcp.connection.opened", pids.server).attributes, serverSide)
  assert.deepStrictEqual(point(points, "tcp.connection.closed", pids.server).attributes, serverSide)

  const failed = point(points, "tcp.connection.failed", pids.client)
  assert.deepStrictEqual([failed.unit, failed.attributes], ["{connection}", {
    ...base,
    "tcp.connection.side": "client",
    "server.port": pids.refused,
    "error.type": "econnrefused"
  }])

  const duration = point(points, "tcp.connection.duration", pids.client)
  assert.deepStrictEqual(
    [duration.type, duration.unit, duration.explicitBounds, duration.attributes],
    ["histogram", "s", [...TcpMetrics.DURATION_BOUNDARIES], clientSide]
  )
  assert.isTrue(duration.sum! > 0 && duration.sum! < 10, `sum ${duration.sum}`)
  assert.strictEqual(duration.bucketCounts!.reduce((a, b) => a + b, 0), 2)
  assert.strictEqual(duration.description, TcpMetrics.instruments.duration.description)
}

describe("TCP metrics through a real OpenTelemetry Collector", () => {
  it.live("connection counts and durations arrive per process resource, with their units and attributes", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const env = {
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
        OTEL_TRACES_EXPORTER: "none",
        OTEL_LOGS_EXPORTER: "none",
        OTEL_METRIC_EXPORT_INTERVAL: "3600000"
      }
      const { client, port, refused, server } = yield* Effect.scoped(Effect.gen(function*() {
        const ctx = yield* Layer.build(agent(env))
        const server = yield* net!.start("server", "128", "2")
        yield* select(server, "tcp-server").pipe(Effect.provideContext(ctx))
        yield* server.go
        const port = Number(yield* server.line)
        const client = yield* net!.start("client", String(port), "2")
        yield* select(client, "tcp-client").pipe(Effect.provideContext(ctx))
        yield* client.go
        const refused = Number(yield* client.line)
        assert.strictEqual(yield* client.line, "done")
        // client: 2 opened, 2 closed, 2 durations, 1 failed; server: 2 opened, 2 closed, 2 durations.
        const telemetry = Context.get(ctx, Telemetry.Telemetry)
        yield* telemetry.stats.pipe(
          Effect.repeat({ until: (s) => s.measurements >= 13, schedule: Schedule.spaced("50 millis") }),
          Effect.timeout("10 seconds")
        )
        yield* Effect.forEach([server, client], finish)
        return { client, port, refused, server }
      }))
      // The layer's scope closed: the metrics were collected and exported once, at shutdown.
      const points = (yield* collector.receiver.waitForMetrics(
        (ps) => ps.filter((p) => p.name.startsWith("tcp.")).length >= 7,
        "20 seconds"
      )).filter((p) => p.name.startsWith("tcp."))
      assertPoints(points, { client: client.pid, server: server.pid, port, refused })
      assert.strictEqual(point(points, "tcp.connection.opened", client.pid).resource["service.name"], "tcp-client")
      assert.strictEqual(point(points, "tcp.connection.opened", server.pid).resource["service.name"], "tcp-server")
    }).pipe(Effect.scoped), { timeout: 120_000 })

  it.live("probescope run --no-builtins --probe tcp_metrics --pid <server>: the server's side, on its resource; nothing else", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      // Started first, waiting for "go": among the processes the agent selects at start.
      const server = yield* net!.start("server", "128", "2")
      // `ip netns exec` becomes python: wait for it, so the agent analyses python, not ip.
      const exe = yield* Effect.sync(() => fs.readlinkSync(`/proc/${server.pid}/exe`)).pipe(
        Effect.repeat({
          until: (e) => path.basename(e).startsWith("python"),
          schedule: Schedule.spaced("10 millis")
        }),
        Effect.timeout("10 seconds")
      )
      const agent = yield* spawnProc(
        cli,
        [
          "run",
          "--no-builtins",
          "--probe",
          "tcp_metrics",
          "--pid",
          String(server.pid)
        ],
        agentEnv({
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
          OTEL_TRACES_EXPORTER: "none",
          OTEL_LOGS_EXPORTER: "none",
          OTEL_METRIC_EXPORT_INTERVAL: "3600000"
        })
      )
      const ready = yield* agent.line("stderr", /^probescope: ready: (.*)$/m, "120 seconds")
      assert.strictEqual(ready[1], `probes tcp_metrics; watching pid ${server.pid}; 1 process(es) attached`)
      yield* server.go
      const port = Number(yield* server.line)
      // Not selected: its side of the connections and its refused connect are not reported.
      const client = yield* net!.start("client", String(port), "2")
      yield* client.go
      yield* client.line
      assert.strictEqual(yield* client.line, "done")
      yield* Effect.forEach([server, client], finish)
      // Its only process has exited: the agent stops, exporting the metrics on the way out.
      const exit = yield* agent.exit("60 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
      // 2 opened + 2 closed.
      assert.match(agent.stderr(), /^probescope: tcp_metrics: 4 records, 0 decode errors/m)

      const points = (yield* collector.receiver.waitForMetrics(
        (ps) => ps.filter((p) => p.name.startsWith("tcp.")).length >= 3,
        "20 seconds"
      )).filter((p) => p.name.startsWith("tcp."))
      const serverSide = {
        "network.transport": "tcp",
        "network.type": "ipv4",
        "tcp.connection.side": "server",
        "server.port": port
      }
      assert.deepStrictEqual(
        points.map((p) => [p.name, p.resource["process.pid"], p.value ?? p.count, p.attributes]).sort(),
        [
          ["tcp.connection.closed", server.pid, 2, serverSide],
          ["tcp.connection.duration", server.pid, 2, serverSide],
          ["tcp.connection.opened", server.pid, 2, serverSide]
        ].sort()
      )
      for (const p of points) {
        assert.strictEqual(p.resource["process.executable.path"], exe)
        assert.strictEqual(p.scope.name, "probescope/tcp_metrics")
      }
    }).pipe(Effect.scoped), { timeout: 180_000 })
})
