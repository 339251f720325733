/** The Manager's counters as the agent's own metrics, exported with telemetry's. */
import { Effect, Layer } from "effect"
import * as Manager from "../../manager/Manager.ts"
import type * as SelfMetrics from "../../telemetry/SelfMetrics.ts"
import * as Telemetry from "../../telemetry/Telemetry.ts"

/**
 * The Manager's per-probe counters as the agent's own metrics (`probescope.probe.*`), read at every metrics
 * collection: what each probe read, skipped and lost, in the kernel and in user space, apart.
 */
export const layer = Layer.effectDiscard(Effect.gen(function*() {
  const telemetry = yield* Telemetry.Telemetry
  const manager = yield* Manager.Manager
  yield* telemetry.registerSelfMetrics(
    Effect.map(manager.stats, (probes) =>
      probes.flatMap((p): ReadonlyArray<SelfMetrics.SelfMetricSample> => {
        const attributes = { probe: p.probe, "probe.kind": p.kind }
        const counter = (name: string, description: string, unit: string, value: number | bigint) =>
          ({ name, description, unit, kind: "counter" as const, value, attributes })
        return [
          counter("probescope.probe.records", "Records decoded into telemetry.", "{record}", p.records),
          counter("probescope.probe.decode_errors", "Records that could not be decoded.", "{record}", p.decodeErrors),
          counter("probescope.probe.skipped", "Records decoded and deliberately not emitted.", "{record}", p.skipped),
          counter(
            "probescope.probe.signal_errors",
            "Records lost because the probe recorded outside its declared signals.",
            "{record}",
            p.signalErrors
          ),
          counter(
            "probescope.probe.consumer.dropped",
            "Records the user-space consumer dropped (its buffer was full).",
            "{record}",
            p.consumerDropped
          ),
          counter(
            "probescope.probe.kernel.submitted",
            "Records the BPF side submitted.",
            "{record}",
            p.kernelSubmitted
          ),
          counter(
            "probescope.probe.kernel.dropped",
            "Records the BPF side could not fit in the ring buffer.",
            "{record}",
            p.kernelDropped
          ),
          counter("probescope.probe.attach.failures", "Attaches that failed.", "{failure}", p.attachFailures),
          {
            name: "probescope.probe.targets",
            description: "Processes the probe is attached to now.",
            unit: "{process}",
            kind: "gauge",
            value: p.targets,
            attributes
          }
        ]
      })
    ),
    { name: "manager" }
  )
}))
