/**
 * Fuzzing what the agent decodes from outside: ring-buffer records (the kernel writes what a traced program's memory
 * held), probe configs and the OTEL_* environment. Each may only succeed or fail with its typed error — never
 * throw or die. A seeded PRNG makes a failure reproduce: the assertion message names the seed and the variant.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Schema } from "effect"
import * as NetHttpClient from "../../src/instrumentations/NetHttpClient.ts"
import * as NetHttpServer from "../../src/instrumentations/NetHttpServer.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"
import { clientRecord, serverRecord } from "../instrumentations/fixtures.ts"
import { rng } from "../prng.ts"


/** The exit's failures are all typed errors whose tag `allowed` accepts (no defect, no interruption). */
const onlyTyped = (
  exit: Exit.Exit<unknown, { readonly _tag: string }>,
  allowed: ReadonlySet<string>,
  label: string
) => {
  if (Exit.isSuccess(exit)) return "ok"
  const reasons = exit.cause.reasons
  assert.isAbove(reasons.length, 0, label)
  for (const r of reasons) {
    assert.strictEqual(r._tag, "Fail", `${label}: ${String(r._tag === "Die" ? r.defect : r._tag)}`)
    if (r._tag === "Fail") assert.isTrue(allowed.has(r.error._tag), `${label}: unexpected ${r.error._tag}`)
  }
  return "failed"
}

const instruments = [
  { def: NetHttpServer.NetHttpServer, valid: serverRecord(), kind: "server" },
  { def: NetHttpClient.NetHttpClient, valid: clientRecord(), kind: "client" }
] as const

describe("fuzzing record decoding", () => {
  for (const { def, kind, valid } of instruments) {
    it(`${def.name}: random and bit-flipped records give a span, undefined or a SchemaError`, () => {
      const seed = 0x5eed + valid.length
      const next = rng(seed)
      const outcomes = { ok: 0, failed: 0 }
      const check = (bytes: Uint8Array, label: string) => {
        const exit = Effect.runSyncExit(def.decode(bytes))
        const outcome = onlyTyped(exit, new Set(["SchemaError"]), `seed ${seed} ${label}`)
        outcomes[outcome]++
        if (Exit.isSuccess(exit) && exit.value !== undefined) {
          // A span the exporters can take: its kind and a name, whatever the bytes said.
          assert.strictEqual(exit.value.kind, kind, label)
          assert.isString(exit.value.name, label)
          assert.strictEqual(exit.value.probe, def.name, label)
        }
      }
      check(valid, "the valid record")
      for (let v = 0; v < 2000; v++) {
        const bytes = new Uint8Array(next(4) === 0 ? next(valid.length * 2 + 1) : valid.length)
        for (let i = 0; i < bytes.length; i++) bytes[i] = next(256)
        check(bytes, `random ${v}`)
      }
      for (let v = 0; v < 3000; v++) {
        const bytes = Uint8Array.from(valid)
        for (let k = 1 + next(8); k > 0; k--) {
          const at = next(bytes.length)
          bytes[at] = next(3) === 0 ? next(256) : bytes[at]! ^ (1 << next(8))
        }
        check(next(10) === 0 ? bytes.subarray(0, next(bytes.length)) : bytes, `flipped ${v}`)
      }
      // Both outcomes must have happened, or the fuzzing did not reach the decoder's checks.
      assert.isAbove(outcomes.ok, 0)
      assert.isAbove(outcomes.failed, 0)
    })
  }
})

/** Arbitrary JSON-ish values, nested, with the edge numbers decoders get wrong. */
const value = (next: (n: number) => number, depth = 0): unknown => {
  const edges = [0, -0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, Number.MIN_VALUE, 1e308]
  switch (next(depth > 2 ? 6 : 9)) {
    case 0:
      return edges[next(edges.length)]
    case 1:
      return next(2 ** 16) - 2 ** 15
    case 2:
      return ["", "0", "abc", " 1 ", "\u0000", "-5", "1e3"][next(7)]
    case 3:
      return next(2) === 0
    case 4:
      return next(2) === 0 ? null : undefined
    case 5:
      return BigInt(next(1000))
    case 6:
      return Array.from({ length: next(4) }, () => value(next, depth + 1))
    default: {
      const keys = ["minN", "x", "__proto__", "constructor", ""]
      const o: Record<string, unknown> = {}
      for (let k = next(4); k > 0; k--) o[keys[next(keys.length)]!] = value(next, depth + 1)
      return o
    }
  }
}

describe("fuzzing probe configs", () => {
  const schemas = {
    empty: Schema.Struct({}),
    // The shape probes use: a bounded number with a default (examples/custom-probe).
    bounded: Schema.Struct({
      minN: Schema.Number.pipe(
        Schema.check(Schema.isGreaterThanOrEqualTo(0)),
        Schema.withDecodingDefault(Effect.succeed(0))
      ),
      name: Schema.optional(Schema.String)
    })
  }

  it("decodeConfig: random values give a config or a ProbeConfigError naming the probe", () => {
    const seed = 0xc0f1
    const next = rng(seed)
    const outcomes = { ok: 0, failed: 0 }
    for (let v = 0; v < 3000; v++) {
      const input = value(next)
      for (const [name, schema] of Object.entries(schemas)) {
        const codec = schema as Schema.Codec<unknown, unknown>
        const exit = Effect.runSyncExit(Probe.decodeConfig(`fuzz_${name}`, codec, input))
        outcomes[onlyTyped(exit, new Set(["ProbeConfigError"]), `seed ${seed} variant ${v} ${name}`)]++
        if (Exit.isFailure(exit)) {
          const reason = exit.cause.reasons[0]
          if (reason?._tag === "Fail") assert.match(reason.error.message, new RegExp(`^probe fuzz_${name}: config`))
        }
      }
    }
    assert.isAbove(outcomes.ok, 0)
    assert.isAbove(outcomes.failed, 0)
  })

  it("an instrument's decode with a random config: a span or a ProbeConfigError", () => {
    const next = rng(0xdec0)
    for (let v = 0; v < 500; v++) {
      const exit = Effect.runSyncExit(NetHttpServer.NetHttpServer.decode(serverRecord(), value(next) as {}))
      onlyTyped(exit, new Set(["ProbeConfigError"]), `seed ${0xdec0} variant ${v}`)
    }
  })
})

describe("fuzzing the OTEL_* environment", () => {
  const variables = [
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_METRIC_EXPORT_TIMEOUT",
    "PROBESCOPE_CONSOLE_FORMAT",
    "PROBESCOPE_SHUTDOWN_TIMEOUT"
  ]
  const pieces = ["", " ", "0", "-1", "1.5", "1e309", "abc", "otlp", "console", "none", "otlp,console", "grpc",
    "http/json", "http/protobuf", "http://c:4318", "ftp://x", "http://", "a=b", "a=b,c", "=", "%zz", "%41=%42",
    "key=val%", "\u00e9", "\u0000", ",,,", "jsonl", "tree", "9".repeat(30)]

  it("load and loadMetrics: a config or a TelemetryConfigError, never a defect", () => {
    const seed = 0x07e1
    const next = rng(seed)
    const outcomes = { ok: 0, failed: 0 }
    for (let v = 0; v < 2000; v++) {
      const env: Record<string, string> = {}
      for (let k = 1 + next(5); k > 0; k--) {
        let s = ""
        for (let p = 1 + next(3); p > 0; p--) s += pieces[next(pieces.length)]
        if (next(5) === 0) s = String.fromCharCode(...Array.from({ length: next(12) }, () => next(0x2fff)))
        env[variables[next(variables.length)]!] = s
      }
      const provider = ConfigProvider.layer(ConfigProvider.fromUnknown(env))
      const loads = [["load", TelemetryConfig.load], ["loadMetrics", TelemetryConfig.loadMetrics]] as const
      for (const [which, load] of loads) {
        const typed = load as Effect.Effect<unknown, { _tag: string }>
        const exit = Effect.runSyncExit(typed.pipe(Effect.provide(provider)))
        const label = `seed ${seed} variant ${v} ${which} ${JSON.stringify(env)}`
        outcomes[onlyTyped(exit, new Set(["TelemetryConfigError"]), label)]++
      }
    }
    assert.isAbove(outcomes.ok, 0)
    assert.isAbove(outcomes.failed, 0)
  })
})
