/**
 * Deprecated: probe layers no longer register here and the Manager no longer reads it. The Manager composes the
 * probes in its context (see `Probe.instancesIn`), so how their layers were merged or provided does not matter.
 * Kept so compositions that still provide `ProbeRegistry.layer` compile and behave the same.
 */
import { Context, Effect, Layer } from "effect"
import type * as Scope from "effect/Scope"
import type { AnyProbe } from "./Probe.ts"

/** The registry of built probes, in build order (a probe's dependencies come before it). */
export class ProbeRegistry extends Context.Service<ProbeRegistry, {
  /** Register for the current scope; a second probe with the same name is refused with a warning. */
  readonly register: (probe: AnyProbe) => Effect.Effect<void, never, Scope.Scope>
  readonly probes: Effect.Effect<ReadonlyArray<AnyProbe>>
}>()("probescope/probe/ProbeRegistry") {}

/** An empty registry. */
export const layer: Layer.Layer<ProbeRegistry> = Layer.sync(ProbeRegistry, () => {
  const probes: Array<AnyProbe> = []
  return ProbeRegistry.of({
    register: (probe) =>
      Effect.suspend(() => {
        if (probes.some((p) => p.name === probe.name)) {
          return Effect.logWarning(`probe ${probe.name} is already registered; the second instance is ignored`)
        }
        probes.push(probe)
        return Effect.addFinalizer(() =>
          Effect.sync(() => {
            const i = probes.indexOf(probe)
            if (i >= 0) probes.splice(i, 1)
          })
        )
      }),
    probes: Effect.sync(() => [...probes])
  })
})
