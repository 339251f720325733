import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Result } from "effect"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"

const load = (env: Record<string, string>) =>
  TelemetryConfig.load.pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))

const loadError = (env: Record<string, string>) =>
  Effect.flatMap(Effect.result(load(env)), (r) =>
    Result.isFailure(r) ? Effect.succeed(r.failure) : Effect.die(new Error("expected a config error")))

describe("TelemetryConfig.load", () => {
  it.effect("defaults follow the OTel SDK environment spec", () =>
    Effect.gen(function*() {
      const c = yield* load({})
      assert.deepStrictEqual(c, {
        serviceName: undefined,
        resourceAttributes: {},
        exporters: ["otlp"],
        otlp: {
          protocol: "http/protobuf",
          endpoint: "http://localhost:4318/v1/traces",
          headers: {},
          timeoutMillis: 10000
        },
        consoleFormat: "tree",
        batch: {
          maxQueueSize: 8192,
          maxExportBatchSize: 2048,
          scheduleDelayMillis: 5000,
          exportTimeoutMillis: 30000,
          maxRetries: 3,
          retryBaseMillis: 200
        },
        shutdownTimeoutMillis: 5000
      })
    }))

  it.effect("the generic endpoint gets /v1/traces for http; the per-signal one is used as-is", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        (yield* load({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" })).otlp.endpoint,
        "http://collector:4318/v1/traces"
      )
      assert.strictEqual(
        (yield* load({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/prefix" })).otlp.endpoint,
        "http://c:4318/prefix/v1/traces"
      )
      assert.strictEqual(
        (yield* load({
          OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318",
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://t:9999/custom"
        })).otlp.endpoint,
        "http://t:9999/custom"
      )
    }))

  it.effect("grpc uses the generic endpoint as-is (default localhost:4317); per-signal protocol wins", () =>
    Effect.gen(function*() {
      const a = yield* load({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })
      assert.deepStrictEqual([a.otlp.protocol, a.otlp.endpoint], ["grpc", "http://localhost:4317"])
      const b = yield* load({
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc",
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4317"
      })
      assert.deepStrictEqual([b.otlp.protocol, b.otlp.endpoint], ["grpc", "http://c:4317"])
    }))

  it.effect("headers are percent-decoded and the per-signal list overrides per key", () =>
    Effect.gen(function*() {
      const c = yield* load({
        OTEL_EXPORTER_OTLP_HEADERS: "api-key=s%20ecret, x-tenant = a ,",
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: "x-tenant=b%2Cc"
      })
      assert.deepStrictEqual(c.otlp.headers, { "api-key": "s ecret", "x-tenant": "b,c" })
    }))

  it.effect("exporter lists: otlp,console; none means no exporter; timeouts and BSP values", () =>
    Effect.gen(function*() {
      const c = yield* load({
        OTEL_TRACES_EXPORTER: "console, otlp",
        OTEL_EXPORTER_OTLP_TIMEOUT: "1500",
        OTEL_BSP_MAX_QUEUE_SIZE: "100",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "10",
        OTEL_BSP_SCHEDULE_DELAY: "0",
        OTEL_BSP_EXPORT_TIMEOUT: "700",
        OTEL_SERVICE_NAME: "checkout",
        OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=prod,team=a%3Db"
      })
      assert.deepStrictEqual(c.exporters, ["console", "otlp"])
      assert.strictEqual(c.otlp.timeoutMillis, 1500)
      assert.deepStrictEqual(
        [c.batch.maxQueueSize, c.batch.maxExportBatchSize, c.batch.scheduleDelayMillis, c.batch.exportTimeoutMillis],
        [100, 10, 0, 700]
      )
      assert.strictEqual(c.serviceName, "checkout")
      assert.deepStrictEqual(c.resourceAttributes, { "deployment.environment.name": "prod", team: "a=b" })
      assert.deepStrictEqual((yield* load({ OTEL_TRACES_EXPORTER: "none" })).exporters, [])
    }))

  it.effect("an unknown protocol is a typed error naming the variable", () =>
    Effect.gen(function*() {
      const e = yield* loadError({ OTEL_EXPORTER_OTLP_PROTOCOL: "http/xml" })
      assert.strictEqual(e._tag, "TelemetryConfigError")
      assert.strictEqual(e.variable, "OTEL_EXPORTER_OTLP_PROTOCOL")
      assert.strictEqual(
        e.message,
        `Invalid OTEL_EXPORTER_OTLP_PROTOCOL="http/xml": Expected "http/protobuf" | "http/json" | "grpc"`
      )
    }))

  it.effect("an unknown exporter is a typed error", () =>
    Effect.gen(function*() {
      const e = yield* loadError({ OTEL_TRACES_EXPORTER: "otlp,zipkin" })
      assert.strictEqual(e._tag, "TelemetryConfigError")
      assert.strictEqual(e.variable, "OTEL_TRACES_EXPORTER")
      assert.match(e.message, /^Invalid OTEL_TRACES_EXPORTER="zipkin": Expected "otlp" \| "console" \| "none"/)
    }))

  it.effect("non-numeric and non-positive sizes are typed errors", () =>
    Effect.gen(function*() {
      const a = yield* loadError({ OTEL_BSP_MAX_QUEUE_SIZE: "lots" })
      assert.strictEqual(a.variable, "OTEL_BSP_MAX_QUEUE_SIZE")
      assert.match(a.message, /^Invalid OTEL_BSP_MAX_QUEUE_SIZE="lots": /)
      const b = yield* loadError({ OTEL_BSP_SCHEDULE_DELAY: "-5" })
      assert.strictEqual(b.variable, "OTEL_BSP_SCHEDULE_DELAY")
      assert.match(b.message, /^Invalid OTEL_BSP_SCHEDULE_DELAY="-5": /)
      const c = yield* loadError({ OTEL_EXPORTER_OTLP_TIMEOUT: "1.5" })
      assert.strictEqual(c.variable, "OTEL_EXPORTER_OTLP_TIMEOUT")
    }))

  it.effect("unset, the span batch is a quarter of the queue, at most 2048 (the specification's 512 for its 2048)", () =>
    Effect.gen(function*() {
      const batchOf = (env: Record<string, string>) =>
        Effect.map(load(env), (c) => [c.batch.maxQueueSize, c.batch.maxExportBatchSize])
      assert.deepStrictEqual(yield* batchOf({ OTEL_BSP_MAX_QUEUE_SIZE: "2048" }), [2048, 512])
      assert.deepStrictEqual(yield* batchOf({ OTEL_BSP_MAX_QUEUE_SIZE: "1000" }), [1000, 250])
      assert.deepStrictEqual(yield* batchOf({ OTEL_BSP_MAX_QUEUE_SIZE: "100000" }), [100000, 2048])
      assert.deepStrictEqual(yield* batchOf({ OTEL_BSP_MAX_QUEUE_SIZE: "3" }), [3, 1])
      // Set, the batch size is taken as it is.
      assert.deepStrictEqual(yield* batchOf({ OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "512" }), [8192, 512])
    }))

  it.effect("a batch larger than the queue is rejected", () =>
    Effect.gen(function*() {
      const e = yield* loadError({ OTEL_BSP_MAX_QUEUE_SIZE: "10", OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "11" })
      assert.strictEqual(e._tag, "TelemetryConfigError")
      assert.strictEqual(
        e.message,
        "Invalid OTEL_BSP_MAX_EXPORT_BATCH_SIZE=11: must not exceed OTEL_BSP_MAX_QUEUE_SIZE (10)"
      )
    }))

  it.effect("a malformed OTEL_RESOURCE_ATTRIBUTES entry is a typed error", () =>
    Effect.gen(function*() {
      const a = yield* loadError({ OTEL_RESOURCE_ATTRIBUTES: "a=1,justakey,b=2" })
      assert.strictEqual(a._tag, "TelemetryConfigError")
      assert.strictEqual(a.variable, "OTEL_RESOURCE_ATTRIBUTES")
      assert.strictEqual(a.message, `Invalid OTEL_RESOURCE_ATTRIBUTES: entry "justakey" is not key=value`)
      const b = yield* loadError({ OTEL_RESOURCE_ATTRIBUTES: "=v" })
      assert.strictEqual(b.message, `Invalid OTEL_RESOURCE_ATTRIBUTES: entry "=v" is not key=value`)
      const c = yield* loadError({ OTEL_RESOURCE_ATTRIBUTES: "a=%E0%A4%A" })
      assert.strictEqual(c.message, `Invalid OTEL_RESOURCE_ATTRIBUTES: bad percent-encoding in "a=%E0%A4%A"`)
    }))

  it.effect("OTEL_RESOURCE_ATTRIBUTES: a bare \"=\" in a value, a spaced key, an unencoded character are errors", () =>
    Effect.gen(function*() {
      const a = yield* loadError({ OTEL_RESOURCE_ATTRIBUTES: "garbage==" })
      assert.strictEqual(a._tag, "TelemetryConfigError")
      assert.strictEqual(a.variable, "OTEL_RESOURCE_ATTRIBUTES")
      assert.strictEqual(
        a.message,
        `Invalid OTEL_RESOURCE_ATTRIBUTES: entry "garbage==" has more than one "=" ` +
          `(percent-encode "=" in a value as %3D)`
      )
      const b = yield* loadError({ OTEL_RESOURCE_ATTRIBUTES: "team=a,my key=v" })
      assert.strictEqual(b.variable, "OTEL_RESOURCE_ATTRIBUTES")
      assert.strictEqual(
        b.message,
        `Invalid OTEL_RESOURCE_ATTRIBUTES: entry "my key=v" has a key with spaces or non-ASCII characters`
      )
      const c = yield* loadError({ OTEL_RESOURCE_ATTRIBUTES: "city=Zürich" })
      assert.strictEqual(
        c.message,
        `Invalid OTEL_RESOURCE_ATTRIBUTES: entry "city=Zürich" has control or non-ASCII characters in its value ` +
          `(percent-encode them)`
      )
      // The message stays on one line, whatever the entry holds.
      const d = yield* loadError({ OTEL_RESOURCE_ATTRIBUTES: "a=x\ny" })
      assert.strictEqual(
        d.message,
        `Invalid OTEL_RESOURCE_ATTRIBUTES: entry "a=x\\ny" has control or non-ASCII characters in its value ` +
          `(percent-encode them)`
      )
      assert.notInclude(d.message, "\n")
    }))

  it.effect("OTEL_RESOURCE_ATTRIBUTES: percent-encoded \"=\", \",\" and UTF-8 decode; empty entries are skipped", () =>
    Effect.gen(function*() {
      const c = yield* load({ OTEL_RESOURCE_ATTRIBUTES: " a = x%3Dy ,, b=1%2C2,city=Z%C3%BCrich,empty=," })
      assert.deepStrictEqual(c.resourceAttributes, { a: "x=y", b: "1,2", city: "Zürich", empty: "" })
    }))

  it.effect("header values may keep a bare \"=\" (base64 padding)", () =>
    Effect.gen(function*() {
      const c = yield* load({ OTEL_EXPORTER_OTLP_HEADERS: "authorization=Basic dXNlcjpwYXNz==" })
      assert.deepStrictEqual(c.otlp.headers, { authorization: "Basic dXNlcjpwYXNz==" })
    }))

  it.effect("PROBESCOPE_SHUTDOWN_TIMEOUT: milliseconds, default 5000; anything else is a typed error", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* load({})).shutdownTimeoutMillis, 5000)
      assert.strictEqual((yield* load({ PROBESCOPE_SHUTDOWN_TIMEOUT: " 1500 " })).shutdownTimeoutMillis, 1500)
      for (const bad of ["5s", "0", "-1", "2.5"]) {
        const e = yield* loadError({ PROBESCOPE_SHUTDOWN_TIMEOUT: bad })
        assert.strictEqual(e._tag, "TelemetryConfigError")
        assert.strictEqual(e.variable, "PROBESCOPE_SHUTDOWN_TIMEOUT")
        assert.match(e.message, new RegExp(`^Invalid PROBESCOPE_SHUTDOWN_TIMEOUT="${bad.replace(".", "\\.")}": `))
      }
    }))

  it.effect("an endpoint that is not a URL is a typed error", () =>
    Effect.gen(function*() {
      const e = yield* loadError({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318 " })
      assert.strictEqual(e.variable, "OTEL_EXPORTER_OTLP_ENDPOINT")
      assert.strictEqual(e.message, `Invalid OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318": not an http(s) URL`)
    }))
})
