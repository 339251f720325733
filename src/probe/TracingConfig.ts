/**
 * Sampling configuration for tracing probes, as OpenTelemetry's `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`
 * define it. Only instrument probes require this service, so only what traces receives it.
 *
 * Sampling is decided in BPF, so unsampled requests never cost a ring-buffer record: a tracing probe's object gets
 * the sampler as `.rodata` constants (see `constants`), declared in C as
 *
 * ```c
 * const volatile u32 ps_sampler_kind = 0;          // 0 always_on, 1 always_off, 2 traceidratio
 * const volatile bool ps_sampler_parent_based = 1; // follow a parent's sampled flag when there is a parent
 * const volatile u64 ps_sampler_threshold = 0;     // traceidratio: sample when the trace id's last 8 bytes,
 *                                                  // read as a big-endian u64, are below this
 * ```
 */
import { Config, Context, Effect, Layer, Schema } from "effect"
import type { ConstantValue } from "../kernel/Bpf.ts"

/** OTEL_TRACES_SAMPLER values. */
export const SamplerName = Schema.Literals([
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio"
])
export type SamplerName = typeof SamplerName.Type

/** A sampler: what to do for root spans, and whether a parent's decision wins. */
export interface Sampler {
  readonly root: "always_on" | "always_off" | "traceidratio"
  /** Between 0 and 1; used when root is "traceidratio". */
  readonly ratio: number
  readonly parentBased: boolean
}

/** Invalid sampler configuration (unknown name, ratio outside [0, 1]). */
export class SamplerConfigError extends Schema.TaggedError<SamplerConfigError>()("SamplerConfigError", {
  message: Schema.String
}) {}

/** Build a sampler from its OTEL name and argument (the ratio, default 1). */
export const fromOtel = (name: string, arg?: string): Effect.Effect<Sampler, SamplerConfigError> =>
  Effect.gen(function*() {
    const known = Schema.is(SamplerName)(name)
    if (!known) {
      return yield* new SamplerConfigError({ message: `OTEL_TRACES_SAMPLER "${name}" is not a supported sampler` })
    }
    const ratio = arg === undefined || arg.trim() === "" ? 1 : Number(arg)
    if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
      return yield* new SamplerConfigError({ message: `OTEL_TRACES_SAMPLER_ARG "${arg}" is not a ratio in [0, 1]` })
    }
    const parentBased = name.startsWith("parentbased_")
    const root = name.replace("parentbased_", "") as Sampler["root"]
    return { root, ratio, parentBased }
  })

/** The OpenTelemetry default: parentbased_always_on. */
export const defaultSampler: Sampler = { root: "always_on", ratio: 1, parentBased: true }

/** The sampler tracing probes use. */
export class TracingConfig extends Context.Service<TracingConfig, {
  readonly sampler: Sampler
}>()("probescope/probe/TracingConfig") {}

/** A fixed sampler. */
export const layer = (sampler: Sampler = defaultSampler): Layer.Layer<TracingConfig> =>
  Layer.succeed(TracingConfig, TracingConfig.of({ sampler }))

/** From OTEL_TRACES_SAMPLER (default parentbased_always_on) and OTEL_TRACES_SAMPLER_ARG. */
export const layerConfig: Layer.Layer<TracingConfig, SamplerConfigError | Config.ConfigError> = Layer.effect(
  TracingConfig,
  Effect.gen(function*() {
    const name = yield* Config.String("OTEL_TRACES_SAMPLER").pipe(Config.withDefault("parentbased_always_on"))
    const arg = yield* Config.option(Config.String("OTEL_TRACES_SAMPLER_ARG"))
    const sampler = yield* fromOtel(name.trim().toLowerCase(), arg._tag === "Some" ? arg.value : undefined)
    return TracingConfig.of({ sampler })
  })
)

const U64_MAX = (1n << 64n) - 1n

/** The sampler as the `.rodata` constants a tracing probe's object declares (see the module comment). */
export const constants = (sampler: Sampler): Readonly<Record<string, ConstantValue>> => {
  const ratioIsAll = sampler.root === "traceidratio" && sampler.ratio >= 1
  const ratioIsNone = sampler.root === "traceidratio" && sampler.ratio <= 0
  const kind = sampler.root === "always_on" || ratioIsAll ? 0 : sampler.root === "always_off" || ratioIsNone ? 1 : 2
  const threshold = kind === 2 ? BigInt(Math.floor(sampler.ratio * 2 ** 53)) * (1n << 11n) : 0n
  return {
    ps_sampler_kind: kind,
    ps_sampler_parent_based: sampler.parentBased,
    ps_sampler_threshold: threshold > U64_MAX ? U64_MAX : threshold
  }
}
