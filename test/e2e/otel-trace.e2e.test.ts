/**
 * Manual OpenTelemetry Go API spans through the CLI into a real OpenTelemetry Collector (root): `probescope run
 * --no-builtins --probe src/instrumentations/OtelTrace.ts --probe src/instrumentations/NetHttpServer.ts --probe
 * src/instrumentations/NetHttpClient.ts --exe <otelapi fixture>` exporting OTLP over HTTP. One request to the
 * fixture's /work handler reaches the collector as one trace of six spans: the handler's SERVER span, the manual
 * "work" span under it (attributes, status Ok, two events), the HTTP CLIENT span made with the manual span's context
 * under "work" (and /leaf's SERVER span under that), the nested manual span under "work" (CLIENT, status Error, an
 * exception event), and the "job" span a worker goroutine starts with the context it is handed, under "work".
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { Duration, Effect, Schedule } from "effect"
import { beforeAll } from "vitest"
import * as Collector from "../collector/Collector.ts"
import { buildOtelApi } from "../instrumentations/OtelTraceFixture.ts"
import type { ReceivedSpan } from "../receiver/Receiver.ts"
import { agentEnv, attachedLine, cli, get, root, spawnProc, startService } from "./harness.ts"

let fixture = ""

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  fixture = buildOtelApi("1.26.8")
}, 600_000)

/** An OTLP/JSON attribute list as a plain record (OTLP/JSON writes ints as strings). */
const attrs = (list: ReadonlyArray<{ key: string; value: Record<string, unknown> }> = []) =>
  Object.fromEntries(list.map((a) => [
    a.key,
    a.value["intValue"] !== undefined
      ? Number(a.value["intValue"])
      : a.value["stringValue"] ?? a.value["boolValue"] ?? a.value["doubleValue"]
  ]))

interface ExportedEvent {
  readonly name: string
  readonly timeUnixNano: string
  readonly attributes?: ReadonlyArray<{ key: string; value: Record<string, unknown> }>
}

interface ExportedSpan {
  readonly spanId: string
  readonly events?: ReadonlyArray<ExportedEvent>
}

const one = (spans: ReadonlyArray<ReceivedSpan>, pred: (s: ReceivedSpan) => boolean, what: string) => {
  const found = spans.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} found`)
  return found[0]!
}

describe("OpenTelemetry Go API spans through the CLI and a real collector", () => {
  it.live("manual spans in the request's trace, between the automatic server and client spans", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const app = yield* startService(fixture, [])
      const agent = yield* spawnProc(
        cli,
        [
          "run",
          "--no-builtins",
          "--probe",
          path.join(root, "src/instrumentations/OtelTrace.ts"),
          // The net/http server and client probes for the automatic spans, as modules too: all three then share one
          // go_context (a built-in by name comes with the CLI's own copy of it, loaded a second time).
          "--probe",
          path.join(root, "src/instrumentations/NetHttpServer.ts"),
          "--probe",
          path.join(root, "src/instrumentations/NetHttpClient.ts"),
          "--exe",
          fixture
        ],
        agentEnv({
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
          OTEL_LOGS_EXPORTER: "none",
          OTEL_METRICS_EXPORTER: "none",
          OTEL_BSP_SCHEDULE_DELAY: "200"
        })
      )
      yield* agent.line("stderr", /^probescope: ready: (.*)$/m, "120 seconds")
      const attached = attachedLine(app.pid).exec(agent.stderr())
      assert.isNotNull(attached, agent.stderr())
      assert.deepStrictEqual(attached![2]!.split(", ").sort(), [
        "go_context",
        "nethttp_client",
        "nethttp_server",
        "otel_trace"
      ])

      assert.strictEqual(yield* get(`http://${app.addr}/work?self=${app.addr}`), 200)
      const spans = yield* collector.receiver.waitFor(6, "30 seconds")
      assert.strictEqual(spans.length, 6)
      const server = one(spans, (s) => s.kind === "SPAN_KIND_SERVER" && s.attributes["url.path"] === "/work", "/work")
      const leaf = one(spans, (s) => s.kind === "SPAN_KIND_SERVER" && s.attributes["url.path"] === "/leaf", "/leaf")
      const client = one(spans, (s) => s.kind === "SPAN_KIND_CLIENT" && s.scope.name === "probescope/nethttp_client",
        "client")
      const work = one(spans, (s) => s.name === "work", "work")
      const nested = one(spans, (s) => s.name === "nested renamed", "nested")
      const job = one(spans, (s) => s.name === "job", "job")

      const manual = (s: ReceivedSpan) =>
        [s.scope.name, s.kind, s.attributes, s.status, s.resource["process.pid"], s.droppedAttributesCount]
      assert.deepStrictEqual(manual(work), [
        "probescope/otel_trace",
        "SPAN_KIND_INTERNAL",
        {
          "app.user": "alice",
          "app.items": 3,
          "app.cached": false,
          "app.ratio": 0.25,
          "app.delta": -42
        },
        { code: "STATUS_CODE_OK", message: "" },
        app.pid,
        // app.tags, a string slice: OTLP's dropped_attributes_count.
        1
      ])
      assert.deepStrictEqual(manual(nested), [
        "probescope/otel_trace",
        "SPAN_KIND_CLIENT",
        {},
        { code: "STATUS_CODE_ERROR", message: "nested failed" },
        app.pid,
        0
      ])
      assert.deepStrictEqual(manual(job), [
        "probescope/otel_trace",
        "SPAN_KIND_INTERNAL",
        {},
        { code: "STATUS_CODE_UNSET", message: "" },
        app.pid,
        0
      ])
      // One trace: server -> work -> (client -> leaf, nested, job).
      for (const s of spans) assert.strictEqual(s.traceId, server.traceId, s.name)
      assert.deepStrictEqual(
        [work.parentSpanId, client.parentSpanId, leaf.parentSpanId, nested.parentSpanId, job.parentSpanId],
        [server.spanId, work.spanId, client.spanId, work.spanId, work.spanId]
      )

      // The events, as the collector holds them (the receiver does not parse events).
      const events = (spanId: string) =>
        collector.exported.pipe(
          Effect.map((requests) =>
            requests.flatMap((r) =>
              ((r.resourceSpans ?? []) as ReadonlyArray<{
                scopeSpans: ReadonlyArray<{ spans: ReadonlyArray<ExportedSpan> }>
              }>).flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans))
            ).find((s) => s.spanId === spanId)
          ),
          // The file exporter writes on an interval: wait for the span's line.
          Effect.repeat({ until: (s) => s !== undefined, schedule: Schedule.spaced("200 millis") }),
          Effect.timeoutOrElse({ duration: Duration.seconds(30), orElse: () => Effect.succeed(undefined) }),
          Effect.map((s) => s?.events?.map((e) => [e.name, attrs(e.attributes)]))
        )
      assert.deepStrictEqual(yield* events(work.spanId), [["cache miss", { "cache.key": "k1" }], ["done", {}]])
      assert.deepStrictEqual(yield* events(nested.spanId), [
        ["exception", { "exception.type": "*errors.errorString", "exception.message": "boom" }]
      ])

      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
    }).pipe(Effect.scoped), 300_000)
})
