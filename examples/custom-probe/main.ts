/**
 * Run the custom probe against a live Go process (root needed):
 *
 *   (cd examples/custom-probe/app && go build -o /tmp/workapp .) && /tmp/workapp &
 *   node_modules/.bin/node examples/custom-probe/main.ts <pid> [seconds]
 *
 * Prints each span, then the probe's counters.
 */
import { Console, Effect, Layer, Stream } from "effect"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as TargetEvent from "../../src/manager/TargetEvent.ts"
import { TelemetrySink } from "../../src/probe/Telemetry.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import { TargetAnalysis } from "../../src/target/GoBinary.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import { WorkProbe } from "./WorkProbe.ts"

const pid = Number(process.argv[2])
const seconds = Number(process.argv[3] ?? 3)

/** Prints spans as they come. */
const PrintSink = Layer.succeed(
  TelemetrySink,
  TelemetrySink.of({
    span: (s) =>
      Console.log(
        `[${s.probe}] pid=${s.pid} ${s.name} n=${s.attributes["work.n"]} ${
          Number(s.endMonoNs - s.startMonoNs) / 1000
        }µs trace=${s.traceId}`
      )
  })
)

const program = Effect.gen(function*() {
  const analysis = yield* TargetAnalysis
  const target = yield* analysis.analyzePid(pid)
  const Agent = ManagerM.layerWith(WorkProbe.layer).pipe(
    Layer.provide(TargetEvent.layer(Stream.make(TargetEvent.TargetEvent.Started({ target })).pipe(
      Stream.concat(Stream.never)
    )))
  )
  yield* Effect.gen(function*() {
    const manager = yield* Manager
    yield* Effect.sleep(`${seconds} seconds`)
    yield* Console.log(JSON.stringify(
      { targets: yield* manager.targets, stats: yield* manager.stats },
      (_k, v) => typeof v === "bigint" ? v.toString() : v,
      2
    ))
  }).pipe(Effect.provide(Agent))
}).pipe(
  Effect.provide(Layer.mergeAll(BpfLive.layer, GoBinary.layer, PrintSink, TracingConfig.layerConfig))
)

Effect.runPromise(program).catch((e) => {
  console.error(e)
  process.exit(1)
})
