import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"

const fromEnv = (env: Record<string, string>) =>
  Effect.gen(function*() {
    return (yield* TracingConfig.TracingConfig).sampler
  }).pipe(Effect.provide(TracingConfig.layerConfig.pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))))

describe("TracingConfig", () => {
  it.effect("reads OTEL_TRACES_SAMPLER and its argument", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* fromEnv({}), TracingConfig.defaultSampler)
      assert.deepStrictEqual(
        yield* fromEnv({ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.25" }),
        { root: "traceidratio", ratio: 0.25, parentBased: true }
      )
      assert.deepStrictEqual(yield* fromEnv({ OTEL_TRACES_SAMPLER: "always_off" }), {
        root: "always_off",
        ratio: 1,
        parentBased: false
      })
    }))

  it.effect("rejects unknown samplers and bad ratios", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.flip(fromEnv({ OTEL_TRACES_SAMPLER: "jaeger_remote" }))
      assert.strictEqual(bad._tag, "SamplerConfigError")
      assert.strictEqual(bad.message, "OTEL_TRACES_SAMPLER \"jaeger_remote\" is not a supported sampler")
      const ratio = yield* Effect.flip(fromEnv({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "2" }))
      assert.strictEqual(ratio.message, "OTEL_TRACES_SAMPLER_ARG \"2\" is not a ratio in [0, 1]")
    }))

  it("encodes the sampler as .rodata constants", () => {
    assert.deepStrictEqual(TracingConfig.constants({ root: "always_on", ratio: 1, parentBased: true }), {
      ps_sampler_kind: 0,
      ps_sampler_parent_based: true,
      ps_sampler_threshold: 0n
    })
    const half = TracingConfig.constants({ root: "traceidratio", ratio: 0.5, parentBased: false })
    assert.strictEqual(half["ps_sampler_kind"], 2)
    assert.strictEqual(half["ps_sampler_threshold"], 1n << 63n)
    assert.strictEqual(TracingConfig.constants({ root: "traceidratio", ratio: 1, parentBased: false })["ps_sampler_kind"], 0)
    assert.strictEqual(TracingConfig.constants({ root: "traceidratio", ratio: 0, parentBased: false })["ps_sampler_kind"], 1)
  })
})
