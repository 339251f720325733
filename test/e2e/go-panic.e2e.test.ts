/**
 * Go panics through the CLI into a real OpenTelemetry Collector (root): `probescope run --no-builtins --probe
 * src/instrumentations/GoPanic.ts --exe <panics fixture>` exporting OTLP over HTTP. A handler's panic reaches the
 * collector as two log records (ERROR at the panic, WARN when net/http recovers it) carrying the trace and span id of
 * the request's server span, and that span reaches it with status ERROR and an `exception` event.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { Duration, Effect, Schedule } from "effect"
import { beforeAll } from "vitest"
import * as Collector from "../collector/Collector.ts"
import { buildPanics } from "../instrumentations/fixtures.ts"
import { agentEnv, attachedLine, cli, root, spawnProc, startService } from "./harness.ts"

let fixture = ""

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  fixture = buildPanics("1.26.8")
}, 600_000)

/** An OTLP/JSON attribute list as a plain record (string, int, bool values; OTLP/JSON writes ints as strings). */
const attrs = (list: ReadonlyArray<{ key: string; value: Record<string, unknown> }> = []) =>
  Object.fromEntries(list.map((a) => [
    a.key,
    a.value["intValue"] !== undefined ? Number(a.value["intValue"]) : a.value["stringValue"] ?? a.value["boolValue"]
  ]))

interface LogRecord {
  readonly timeUnixNano: string
  readonly severityNumber: number
  readonly severityText?: string
  readonly body: { readonly stringValue: string }
  readonly attributes?: ReadonlyArray<{ key: string; value: Record<string, unknown> }>
  readonly traceId?: string
  readonly spanId?: string
  readonly flags?: number
}

interface SpanEvent {
  readonly name: string
  readonly timeUnixNano: string
  readonly attributes?: ReadonlyArray<{ key: string; value: Record<string, unknown> }>
}

interface ResourceLogs {
  readonly resource: { readonly attributes: ReadonlyArray<{ key: string; value: Record<string, unknown> }> }
  readonly scopeLogs: ReadonlyArray<{
    readonly scope: { readonly name: string }
    readonly logRecords: ReadonlyArray<LogRecord>
  }>
}

/** The log records the collector exported so far, with their resource and scope. */
const exportedLogs = (collector: Collector.Collector) =>
  Effect.map(collector.exported, (requests) =>
    requests.flatMap((r) => (r.resourceLogs ?? []) as ReadonlyArray<ResourceLogs>).flatMap((rl) =>
      rl.scopeLogs.flatMap((sl) =>
        sl.logRecords.map((l) => ({ resource: attrs(rl.resource.attributes), scope: sl.scope.name, record: l }))
      )
    ))

describe("go/panic through the CLI and a real collector", () => {
  it.live("a handler's panic: two log records on the request's span, and the span ended with ERROR", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const app = yield* startService(fixture, [])
      const agent = yield* spawnProc(
        cli,
        ["run", "--no-builtins", "--probe", path.join(root, "src/instrumentations/GoPanic.ts"), "--exe", fixture],
        agentEnv({
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
          OTEL_METRICS_EXPORTER: "none",
          OTEL_BSP_SCHEDULE_DELAY: "200",
          OTEL_BLRP_SCHEDULE_DELAY: "200"
        })
      )
      yield* agent.line("stderr", /^probescope: ready: (.*)$/m, "120 seconds")
      const attached = attachedLine(app.pid).exec(agent.stderr())
      assert.isNotNull(attached, agent.stderr())
      assert.deepStrictEqual(attached![2]!.split(", ").sort(), ["go_context", "go_panic", "nethttp_server"])

      const closed = yield* Effect.promise(() =>
        fetch(`http://${app.addr}/panic/error`).then(() => false, () => true)
      )
      assert.isTrue(closed, "the panicking request gets no response")

      const [span] = yield* collector.receiver.waitFor(1, "30 seconds")
      assert.strictEqual(span!.name, "GET /panic/error")
      assert.strictEqual(span!.kind, "SPAN_KIND_SERVER")
      assert.strictEqual(span!.scope.name, "probescope/go_panic")
      assert.strictEqual(span!.resource["process.pid"], app.pid)
      assert.deepStrictEqual(span!.status, { code: "STATUS_CODE_ERROR", message: "panic: boom: errors.New" })
      assert.strictEqual(span!.attributes["error.type"], "*errors.errorString")
      assert.strictEqual(span!.attributes["http.route"], "/panic/error")

      const logs = yield* exportedLogs(collector).pipe(
        Effect.repeat({ until: (l) => l.length >= 2, schedule: Schedule.spaced("200 millis") }),
        Effect.timeoutOrElse({
          duration: Duration.seconds(30),
          orElse: () => Effect.die(new Error(`log records: ${agent.stderr()}`))
        })
      )
      assert.deepStrictEqual(
        logs.map((l) => [l.scope, l.record.severityNumber, l.record.body.stringValue, attrs(l.record.attributes)]),
        [
          ["probescope/go_panic", 17, "panic: boom: errors.New", {
            "exception.type": "*errors.errorString",
            "exception.message": "boom: errors.New"
          }],
          ["probescope/go_panic", 13, "recovered from panic: boom: errors.New", {
            "exception.type": "*errors.errorString",
            "exception.message": "boom: errors.New"
          }]
        ]
      )
      for (const l of logs) {
        assert.strictEqual(l.resource["process.pid"], app.pid)
        assert.strictEqual(l.record.traceId, span!.traceId)
        assert.strictEqual(l.record.spanId, span!.spanId)
      }
      // The ERROR record is the panic's moment, inside the span; the span ends as net/http's deferred closure starts,
      // and the runtime's recovery (the WARN record) follows once that closure has called recover().
      const [panicked, recovered] = logs.map((l) => BigInt(l.record.timeUnixNano))
      assert.isTrue(BigInt(span!.startTimeUnixNano) < panicked! && panicked! < BigInt(span!.endTimeUnixNano))
      assert.isTrue(BigInt(span!.endTimeUnixNano) <= recovered!)

      // The span's exception event, as the collector holds it (the receiver does not parse events).
      const exportedSpan = yield* collector.exported.pipe(
        Effect.map((requests) =>
          requests.flatMap((r) =>
            ((r.resourceSpans ?? []) as ReadonlyArray<{
              scopeSpans: ReadonlyArray<{ spans: ReadonlyArray<{ spanId: string; events?: ReadonlyArray<SpanEvent> }> }>
            }>).flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans))
          ).find((s) => s.spanId === span!.spanId)
        ),
        // The file exporter writes on an interval: wait for the span's line.
        Effect.repeat({ until: (s) => s !== undefined, schedule: Schedule.spaced("200 millis") }),
        Effect.timeoutOrElse({ duration: Duration.seconds(30), orElse: () => Effect.succeed(undefined) })
      )
      assert.deepStrictEqual(exportedSpan?.events?.map((e) => [e.name, e.timeUnixNano, attrs(e.attributes)]), [
        ["exception", String(panicked), {
          "exception.type": "*errors.errorString",
          "exception.message": "boom: errors.New"
        }]
      ])

      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
    }).pipe(Effect.scoped), 300_000)
})
