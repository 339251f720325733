/**
 * Where probe layers register themselves as they are built, and what the Manager reads. Adding a probe — built-in
 * or custom — is composing its layer; nothing in the framework lists probes.
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
