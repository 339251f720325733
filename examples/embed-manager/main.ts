/**
 * Embedding the Manager in an application's own Effect service: an `Instrumentation` service that instruments
 * processes on request and reports status, with the Manager (and its probes) as an implementation detail.
 *
 *   node_modules/.bin/node examples/embed-manager/main.ts
 *
 * Runs on the fake kernel; with root, provide `BpfLive.layer` and build targets with src/target instead.
 */
import { Console, Context, Effect, Layer, Stream } from "effect"
import * as BpfTest from "../../src/kernel/BpfTest.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import type { ProbeStats } from "../../src/manager/Manager.ts"
import { TargetEvent } from "../../src/manager/TargetEvent.ts"
import * as ProbeRegistry from "../../src/probe/ProbeRegistry.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import type { Target } from "../../src/probe/Target.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import { WorkProbe } from "../custom-probe/WorkProbe.ts"

/** The application's view: no probes, no kernel, no Manager in its type. */
class Instrumentation extends Context.Service<Instrumentation, {
  readonly instrument: (target: Target) => Effect.Effect<ReadonlyArray<string>>
  readonly forget: (pid: number) => Effect.Effect<void>
  readonly status: Effect.Effect<ReadonlyArray<ProbeStats>>
}>()("example/Instrumentation") {
  /** Built on `Manager.make`: no target source, the service drives it. */
  static readonly layer = Layer.effect(
    Instrumentation,
    Effect.gen(function*() {
      const manager = yield* ManagerM.make
      return Instrumentation.of({
        instrument: (target) =>
          Effect.gen(function*() {
            yield* manager.handle(TargetEvent.Started({ target }))
            const mine = (yield* manager.targets).find((t) => t.pid === target.pid)
            return mine?.probes ?? []
          }),
        forget: (pid) => manager.handle(TargetEvent.Exited({ pid })),
        status: manager.stats
      })
    })
  ).pipe(
    Layer.provide(WorkProbe.layer),
    Layer.provide(ProbeRegistry.layer),
    Layer.provide(Layer.mergeAll(BpfTest.layer, TracingConfig.layer(), ProbeTest.layerSink))
  )
}

const program = Effect.gen(function*() {
  const inst = yield* Instrumentation
  const targets = [1, 2, 3].map((pid) => ProbeTest.target({ pid, functions: pid === 3 ? {} : { "main.work": {} } }))
  const attached = yield* Effect.forEach(targets, inst.instrument)
  yield* Stream.fromIterable(attached).pipe(
    Stream.zipWithIndex,
    Stream.runForEach(([probes, i]) => Console.log(`pid ${i + 1}: ${probes.length === 0 ? "(none)" : probes.join(", ")}`))
  )
  yield* inst.forget(1)
  const [work] = yield* inst.status
  yield* Console.log(`${work!.probe}: attached to ${work!.targets} process(es), ${work!.attachFailures} failures`)
}).pipe(Effect.provide(Instrumentation.layer))

Effect.runPromise(program)
