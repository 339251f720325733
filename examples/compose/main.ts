/**
 * Composing built-in and custom probes as layers in an Effect program, on the fake kernel so it runs anywhere:
 *
 *   node_modules/.bin/node examples/compose/main.ts
 *
 * The application decides which probes exist by composing their layers; the Manager only reads the registry. With
 * root, swap `BpfTest.layer` for `BpfLive.layer` and the simulated records for real processes.
 */
import { Console, Effect, Layer } from "effect"
import * as BpfTest from "../../src/kernel/BpfTest.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedSpans, TestTargets } from "../../src/probe/ProbeTest.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import { WorkProbe, WorkRecord } from "../custom-probe/WorkProbe.ts"
import { DemoContext, DemoHttpClient, DemoHttpServer, DemoRecord } from "./probes.ts"

/** Built-in probes (stand-ins, see probes.ts) plus a custom one: just layers. */
const Probes = Layer.mergeAll(DemoHttpServer.layer, DemoHttpClient.layer, DemoContext.layer, WorkProbe.layer)

const Agent = ManagerM.layerWith(Probes).pipe(
  Layer.provideMerge(Layer.mergeAll(
    BpfTest.layer,
    TracingConfig.layer({ root: "traceidratio", ratio: 0.5, parentBased: true }),
    ProbeTest.layerSink,
    ProbeTest.layerTargets
  )),
  Layer.provide(Probe.settings({ "example/work": { minN: 100 } }))
)

const program = Effect.gen(function*() {
  const manager = yield* Manager
  const kernel = yield* FakeKernel
  const targets = yield* TestTargets
  const captured = yield* CapturedSpans

  yield* Console.log("registered:", manager.probes.map((p) => `${p.name} (${p.kind})`).join(", "))
  const web = ProbeTest.target({
    pid: 100,
    exe: "/srv/web",
    functions: {
      "runtime.newproc1": {},
      "net/http.serverHandler.ServeHTTP": {},
      "net/http.(*Transport).roundTrip": {},
      "main.work": {}
    },
    fields: { "net/http.Request.Method": 0 }
  })
  const batch = ProbeTest.target({ pid: 200, exe: "/srv/batch", goVersion: "1.20.3", functions: { "main.work": {} } })
  for (const t of [web, batch]) {
    yield* Console.log(`inspect pid ${t.pid}:`)
    for (const i of manager.inspect(t)) {
      const a = i.applicability
      yield* Console.log(`  ${i.probe}: ${a._tag === "NotApplicable" ? `no (${a.reason})` : a._tag}`)
    }
    yield* targets.start(t)
  }
  yield* Effect.sleep("10 millis")

  yield* kernel.push("demo/http-server", [DemoRecord.encode({
    start: 1_000n,
    end: 90_000n,
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    parentSpanId: "0000000000000000",
    pid: 100,
    status: 200,
    pathLen: 0,
    path: "/orders"
  })])
  yield* kernel.push("example/work", [WorkRecord.encode({
    start: 2_000n,
    end: 30_000n,
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "1111111111111111",
    n: 1500,
    goroutine: 0xc000001a40n,
    pid: 200
  })])
  for (const s of yield* captured.take(2)) {
    yield* Console.log(`span [${s.probe}] pid=${s.pid} ${s.kind} "${s.name}" ${(s.endMonoNs - s.startMonoNs) / 1000n}µs`)
  }
  const loads = (yield* kernel.events).filter((e) => e._tag === "Load")
  yield* Console.log("loads:", loads.map((e) => e._tag === "Load" ? e.object : "").join(", "))
  yield* Console.log("targets:", JSON.stringify(yield* manager.targets))
}).pipe(Effect.provide(Agent))

Effect.runPromise(program).then(() => console.log("stopped: every probe detached and closed"))
