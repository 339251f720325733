/**
 * The whole agent embedded in an Effect program: the `Agent` layer with the built-in probes and the custom
 * `WorkProbe`, an application service that waits for `ready` and reports what was attached. Logs go to stderr;
 * stdout is the program's own (and the console exporter's).
 *
 *   node_modules/.bin/node examples/embed-agent/main.ts [--real] EXE
 *
 * By default it runs on the fake kernel (no root: analysis and discovery only read /proc) with telemetry captured in
 * memory; `--real` loads the probes into the kernel (root) and exports as the OTEL_* variables say.
 */
import { Console, Context, Effect, Layer } from "effect"
import * as Agent from "../../src/agent/Agent.ts"
import * as BpfTest from "../../src/kernel/BpfTest.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import { WorkProbe } from "../custom-probe/WorkProbe.ts"

const real = process.argv.includes("--real")
const arg = process.argv.slice(2).find((a) => a !== "--real")
if (arg === undefined) {
  console.error("usage: main.ts [--real] EXE")
  process.exit(2)
}
const exe: string = arg

/** The application's view of the agent: whether it is ready, and what it attached to. */
class Tracing extends Context.Service<Tracing, {
  readonly attached: Effect.Effect<ReadonlyArray<string>>
}>()("example/Tracing") {
  static readonly layer = Layer.effect(
    Tracing,
    Effect.gen(function*() {
      const agent = yield* Agent.Agent
      return Tracing.of({
        attached: Effect.map(agent.ready, (report) => [
          ...report.attached.map((p) => `pid ${p.pid}: ${p.probes.join(", ")}`),
          ...report.failed.map((p) => `pid ${p.pid}: not attached: ${p.reason}`)
        ])
      })
    })
  ).pipe(
    Layer.provide(Agent.layer({
      selection: { pids: [], exes: [exe] },
      probes: [...Agent.builtins, WorkProbe],
      settings: { "example/work": { minN: 1200 } },
      ...(real ? {} : { kernel: BpfTest.layer, telemetry: Telemetry.layerTest() })
    }))
  )
}

const program = Effect.gen(function*() {
  const tracing = yield* Tracing
  const attached = yield* tracing.attached
  yield* Console.log(attached.length === 0 ? "no process of it is running" : attached.join("\n"))
}).pipe(Effect.provide(Tracing.layer))

Effect.runPromise(program).catch((e) => {
  console.error(e)
  process.exit(1)
})
