/**
 * The tests' real OTLP receiver: builds test/receiver (Go) once into test/.cache/, runs it scoped, and exposes the
 * spans it received (decoded from its JSON lines) as an Effect, a Stream and `waitFor(n)`, and the metric data points
 * it received (lines with `"signal":"metric"`, kept apart: the span views only ever hold spans) as `metrics` and
 * `waitForMetrics`.
 *
 *   const receiver = yield* Receiver.make()            // inside a Scope
 *   // export to receiver.httpTracesUrl (http/protobuf, http/json) or receiver.grpcEndpoint (grpc)
 *   const spans = yield* receiver.waitFor(3)
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { existsSync, mkdirSync, renameSync, statSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { type Cause, Context, Duration, Effect, Layer, Queue, Schedule, Schema, Stream } from "effect"

const here = dirname(fileURLToPath(import.meta.url))
const cacheDir = join(here, "..", ".cache")
/** Where the built receiver binary is cached. */
export const binaryPath = join(cacheDir, "otlp-receiver")

/** Building, starting or waiting on the receiver went wrong. */
export class ReceiverError extends Schema.TaggedError<ReceiverError>()("ReceiverError", {
  message: Schema.String
}) {}

/** One span as the receiver printed it. Times are decimal strings of Unix ns (they exceed 2^53). */
export const ReceivedSpan = Schema.Struct({
  protocol: Schema.Literals(["http/protobuf", "http/json", "grpc"]),
  headers: Schema.optional(Schema.Record(Schema.String, Schema.String)),
  resource: Schema.Record(Schema.String, Schema.Unknown),
  scope: Schema.Struct({ name: Schema.String, version: Schema.String }),
  traceId: Schema.String,
  spanId: Schema.String,
  /** "" for a root span. */
  parentSpanId: Schema.String,
  /** OTLP span flags: W3C trace flags in the low byte, 0x100 "has is-remote", 0x200 "parent is remote". */
  flags: Schema.Number,
  name: Schema.String,
  /** The OTLP enum name, e.g. "SPAN_KIND_SERVER". */
  kind: Schema.String,
  startTimeUnixNano: Schema.String,
  endTimeUnixNano: Schema.String,
  attributes: Schema.Record(Schema.String, Schema.Unknown),
  /** code is the OTLP enum name, e.g. "STATUS_CODE_ERROR". */
  status: Schema.Struct({ code: Schema.String, message: Schema.String }),
  /** OTLP's dropped counts (0 when none). */
  droppedAttributesCount: Schema.optional(Schema.Number),
  droppedEventsCount: Schema.optional(Schema.Number)
})
export type ReceivedSpan = typeof ReceivedSpan.Type

/** One metric data point as the receiver printed it. Only the fields of its `type` are present. */
export const ReceivedMetricPoint = Schema.Struct({
  signal: Schema.Literal("metric"),
  protocol: Schema.Literals(["http/protobuf", "http/json", "grpc"]),
  headers: Schema.optional(Schema.Record(Schema.String, Schema.String)),
  resource: Schema.Record(Schema.String, Schema.Unknown),
  scope: Schema.Struct({ name: Schema.String, version: Schema.String }),
  name: Schema.String,
  description: Schema.String,
  unit: Schema.String,
  type: Schema.Literals(["histogram", "sum", "gauge"]),
  /** The OTLP enum name, e.g. "AGGREGATION_TEMPORALITY_CUMULATIVE" (histograms and sums). */
  temporality: Schema.optional(Schema.String),
  startTimeUnixNano: Schema.String,
  timeUnixNano: Schema.String,
  attributes: Schema.Record(Schema.String, Schema.Unknown),
  count: Schema.optional(Schema.Number),
  sum: Schema.optional(Schema.Number),
  min: Schema.optional(Schema.Number),
  max: Schema.optional(Schema.Number),
  bucketCounts: Schema.optional(Schema.Array(Schema.Number)),
  explicitBounds: Schema.optional(Schema.Array(Schema.Number)),
  /** Sums and gauges. */
  value: Schema.optional(Schema.Number)
})
export type ReceivedMetricPoint = typeof ReceivedMetricPoint.Type

const Ports = Schema.Struct({ http: Schema.Number, grpc: Schema.Number })
const decodeSpan = Schema.decodeUnknownSync(ReceivedSpan)
const decodeMetricPoint = Schema.decodeUnknownSync(ReceivedMetricPoint)
const decodePorts = Schema.decodeUnknownSync(Schema.fromJsonString(Ports))

const sourcesNewerThan = (binary: string) => {
  if (!existsSync(binary)) return true
  const built = statSync(binary).mtimeMs
  return ["main.go", "go.mod", "go.sum"].some((f) => statSync(join(here, f)).mtimeMs > built)
}

/** Builds the receiver if the cached binary is missing or older than its sources; returns the binary's path. */
export const build: Effect.Effect<string, ReceiverError> = Effect.callback<string, ReceiverError>((resume) => {
  if (!sourcesNewerThan(binaryPath)) return resume(Effect.succeed(binaryPath))
  mkdirSync(cacheDir, { recursive: true })
  // Build to a private name and rename: concurrent test files never see a half-written binary.
  const tmp = `${binaryPath}.${process.pid}.tmp`
  execFile("go", ["build", "-o", tmp, "."], { cwd: here, timeout: 300_000 }, (error, _stdout, stderr) => {
    if (error) {
      const message = `go build of test/receiver failed: ${stderr || error.message}`
      resume(Effect.fail(new ReceiverError({ message })))
      return
    }
    renameSync(tmp, binaryPath)
    resume(Effect.succeed(binaryPath))
  })
})

/** A running receiver. */
export interface Receiver {
  readonly httpPort: number
  readonly grpcPort: number
  /** `http://127.0.0.1:<http>`: the generic OTEL_EXPORTER_OTLP_ENDPOINT for http protocols. */
  readonly httpEndpoint: string
  /** `http://127.0.0.1:<http>/v1/traces`. */
  readonly httpTracesUrl: string
  /** `http://127.0.0.1:<http>/v1/metrics`. */
  readonly httpMetricsUrl: string
  /** `http://127.0.0.1:<grpc>`. */
  readonly grpcEndpoint: string
  /** Every span received so far, in arrival order. */
  readonly spans: Effect.Effect<ReadonlyArray<ReceivedSpan>>
  /** Spans received so far, then each new one. */
  readonly stream: Stream.Stream<ReceivedSpan>
  /** Waits until at least `n` spans arrived (default timeout 10 s) and returns all of them. */
  readonly waitFor: (n: number, timeout?: Duration.Input) => Effect.Effect<ReadonlyArray<ReceivedSpan>, ReceiverError>
  /** Every metric data point received so far, in arrival order. */
  readonly metrics: Effect.Effect<ReadonlyArray<ReceivedMetricPoint>>
  /**
   * Waits until the points received so far satisfy `done` (default timeout 10 s) and returns all of them. Cumulative
   * exporters resend every series per collection, so a count alone rarely says "the collection I want arrived".
   */
  readonly waitForMetrics: (
    done: (points: ReadonlyArray<ReceivedMetricPoint>) => boolean,
    timeout?: Duration.Input
  ) => Effect.Effect<ReadonlyArray<ReceivedMetricPoint>, ReceiverError>
  /** Stops the receiver now (the scope would do it later): lets a test take the endpoint down. */
  readonly stop: Effect.Effect<void>
}

/** Ports to listen on (0 or absent: any free port), e.g. to bring a stopped receiver back on the same ports. */
export interface ReceiverOptions {
  readonly httpPort?: number
  readonly grpcPort?: number
}

const stopChild = (child: ChildProcess) =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.stdin?.end()
    const timer = setTimeout(() => child.kill("SIGKILL"), 2000)
    child.once("exit", () => clearTimeout(timer))
  })

/** Builds (if needed) and starts a receiver for the current scope. */
export const make = Effect.fnUntraced(function*(options: ReceiverOptions = {}) {
  const binary = yield* build
  const received: Array<ReceivedSpan> = []
  const receivedPoints: Array<ReceivedMetricPoint> = []
  const subscribers = new Set<Queue.Queue<ReceivedSpan, Cause.Done>>()
  let stderr = ""

  const child = yield* Effect.acquireRelease(
    Effect.sync(() =>
      spawn(binary, ["-http-port", String(options.httpPort ?? 0), "-grpc-port", String(options.grpcPort ?? 0)], {
        stdio: ["pipe", "pipe", "pipe"]
      })
    ),
    stopChild
  )
  child.stderr?.on("data", (d: Buffer) => void (stderr += d.toString()))

  const ports = yield* Effect.callback<typeof Ports.Type, ReceiverError>((resume) => {
    let buffer = ""
    let gotPorts = false
    child.stdout?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString()
      let nl: number
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        if (!gotPorts) {
          gotPorts = true
          try {
            resume(Effect.succeed(decodePorts(line)))
          } catch (e) {
            resume(Effect.fail(new ReceiverError({ message: `bad first line from receiver: ${line} (${e})` })))
          }
          continue
        }
        const json: unknown = JSON.parse(line)
        if (typeof json === "object" && json !== null && "signal" in json && json.signal === "metric") {
          receivedPoints.push(decodeMetricPoint(json))
          continue
        }
        const span = decodeSpan(json)
        received.push(span)
        for (const q of subscribers) Queue.offerUnsafe(q, span)
      }
    })
    child.once("exit", (code) => {
      if (!gotPorts) resume(Effect.fail(new ReceiverError({ message: `receiver exited (${code}): ${stderr}` })))
    })
  }).pipe(
    Effect.timeoutOrElse({
      duration: Duration.seconds(10),
      orElse: () => Effect.fail(new ReceiverError({ message: `receiver did not report its ports: ${stderr}` }))
    })
  )

  const spans = Effect.sync((): ReadonlyArray<ReceivedSpan> => [...received])
  const metrics = Effect.sync((): ReadonlyArray<ReceivedMetricPoint> => [...receivedPoints])
  const receiver: Receiver = {
    httpPort: ports.http,
    grpcPort: ports.grpc,
    httpEndpoint: `http://127.0.0.1:${ports.http}`,
    httpTracesUrl: `http://127.0.0.1:${ports.http}/v1/traces`,
    httpMetricsUrl: `http://127.0.0.1:${ports.http}/v1/metrics`,
    grpcEndpoint: `http://127.0.0.1:${ports.grpc}`,
    spans,
    metrics,
    waitForMetrics: (done, timeout = Duration.seconds(10)) =>
      metrics.pipe(
        Effect.repeat({ until: done, schedule: Schedule.spaced(Duration.millis(20)) }),
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () =>
            Effect.fail(
              new ReceiverError({
                message: `waited for metrics, the receiver got ${receivedPoints.length} points: ` +
                  JSON.stringify(receivedPoints.map((p) => [p.name, p.count ?? p.value]))
              })
            )
        })
      ),
    stream: Stream.callback<ReceivedSpan>((queue) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          for (const s of received) Queue.offerUnsafe(queue, s)
          subscribers.add(queue)
        }),
        () => Effect.sync(() => void subscribers.delete(queue))
      )
    ),
    waitFor: (n, timeout = Duration.seconds(10)) =>
      spans.pipe(
        Effect.repeat({ until: (s) => s.length >= n, schedule: Schedule.spaced(Duration.millis(20)) }),
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () =>
            Effect.fail(
              new ReceiverError({ message: `waited for ${n} spans, the receiver got ${received.length}` })
            )
        })
      ),
    stop: stopChild(child)
  }
  return receiver
})

/** The receiver as a service, for `layer(...)` blocks in tests. */
export class ReceiverService extends Context.Service<ReceiverService, Receiver>()("probescope/test/Receiver") {}

/** A scoped receiver layer. */
export const layer = (options: ReceiverOptions = {}): Layer.Layer<ReceiverService, ReceiverError> =>
  Layer.effect(ReceiverService, make(options))
