/**
 * Composing built-in and custom probes as layers in an Effect program, on the fake kernel so it runs anywhere:
 *
 *   node_modules/.bin/node examples/compose/main.ts
 *
 * The built-in net/http server and client probes (which bring in the go_context daemon they reuse maps from) and the
 * custom probe of examples/custom-probe are all plain layers: the application decides which probes exist by merging
 * them, and the Manager only reads the registry. With root, swap `BpfTest.layer` for `BpfLive.layer` and the
 * simulated records and targets for real processes (see src/agent/Agent.ts).
 */
import { Console, Effect, Layer } from "effect"
import { GoContext } from "../../src/instrumentations/GoContext.ts"
import { NetHttpClient } from "../../src/instrumentations/NetHttpClient.ts"
import * as NetHttpClientM from "../../src/instrumentations/NetHttpClient.ts"
import { NetHttpServer } from "../../src/instrumentations/NetHttpServer.ts"
import * as NetHttpServerM from "../../src/instrumentations/NetHttpServer.ts"
import * as BpfTest from "../../src/kernel/BpfTest.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import type { Manifest } from "../../src/probe/Manifest.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedSpans, TestTargets } from "../../src/probe/ProbeTest.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import { WorkProbe, WorkRecord } from "../custom-probe/WorkProbe.ts"
import * as Ids from "../../src/probe/Ids.ts"

/** Two built-in probes and a custom one: just layers. go_context comes in as the built-ins' dependency. */
const Probes = Layer.mergeAll(NetHttpServer.layer, NetHttpClient.layer, WorkProbe.layer)

const Agent = ManagerM.layerWith(Probes).pipe(
  Layer.provideMerge(Layer.mergeAll(
    BpfTest.layer,
    TracingConfig.layer({ root: "traceidratio", ratio: 0.5, parentBased: true }),
    ProbeTest.layerSink,
    ProbeTest.layerTargets
  )),
  Layer.provide(Probe.settings({ "example/work": { minN: 100 } }))
)

/**
 * A fake Go process that has every symbol and struct field the given manifests ask for (made-up offsets: the fake
 * kernel does not read them), plus `main.work`.
 */
const fakeProcess = (pid: number, exe: string, goVersion: string, manifests: ReadonlyArray<Manifest>) => {
  const functions: Record<string, {}> = { "main.work": {} }
  const fields: Record<string, number> = {}
  for (const m of manifests) {
    for (const s of m.symbols ?? []) functions[s.name] = {}
    for (const f of Object.values(m.fields ?? {})) fields[`${f.type}.${f.field}`] = 8 * Object.keys(fields).length
  }
  return ProbeTest.target({ pid, exe, goVersion, functions, fields })
}

const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
const head = { traceId: Ids.fromHex(traceId), pid: 100, flags: 1, status: 200 }

const program = Effect.gen(function*() {
  const manager = yield* Manager
  const kernel = yield* FakeKernel
  const targets = yield* TestTargets
  const captured = yield* CapturedSpans

  yield* Console.log("registered:", manager.probes.map((p) => `${p.name} (${p.kind})`).join(", "))
  const web = fakeProcess(100, "/srv/web", "1.26.8", [GoContext, NetHttpServer, NetHttpClient].map((p) => p.manifest))
  // Outside the built-ins' Go range (they are tested on the last three releases); the custom probe still applies.
  const batch = fakeProcess(200, "/srv/batch", "1.24.3", [])
  for (const t of [web, batch]) {
    yield* Console.log(`inspect pid ${t.pid} (Go ${t.goVersion}):`)
    for (const i of manager.inspect(t)) {
      const a = i.applicability
      yield* Console.log(`  ${i.probe}: ${a._tag === "NotApplicable" ? `no (${a.reason})` : a._tag}`)
    }
    yield* targets.start(t)
  }
  yield* Effect.sleep("10 millis")

  // What the BPF programs would write: a request served by pid 100, an outgoing call made while serving it, and a
  // main.work call in pid 200. Records are built with the probes' own layouts.
  yield* kernel.push("nethttp_server", [NetHttpServerM.Record.encode({
    ...head,
    startNs: 1_000n,
    endNs: 90_000n,
    spanId: Ids.fromHex("00f067aa0ba902b7"),
    parentSpanId: Ids.fromHex("0000000000000000"),
    parent: 0,
    protoMajor: 1,
    protoMinor: 1,
    tls: false,
    methodLen: 0,
    pathLen: 0,
    hostLen: 0,
    remoteLen: 0,
    patternLen: 0,
    schemeLen: 0,
    linked: false,
    method: "GET",
    path: "/orders/7",
    host: "127.0.0.1:8080",
    remote: "127.0.0.1:51234",
    pattern: "GET /orders/{id}",
    scheme: ""
  })])
  yield* kernel.push("nethttp_client", [NetHttpClientM.Record.encode({
    ...head,
    startNs: 5_000n,
    endNs: 60_000n,
    spanId: Ids.fromHex("1111111111111111"),
    parentSpanId: Ids.fromHex("00f067aa0ba902b7"),
    parent: 1,
    hasError: false,
    methodLen: 0,
    schemeLen: 0,
    hostLen: 0,
    pathLen: 0,
    queryLen: 0,
    propagated: false,
    linked: false,
    localPort: 0,
    method: "GET",
    scheme: "http",
    host: "127.0.0.1:8081",
    path: "/stock/7",
    query: ""
  })])
  yield* kernel.push("example/work", [WorkRecord.encode({
    start: 2_000n,
    end: 30_000n,
    traceId,
    spanId: "2222222222222222",
    n: 1500,
    goroutine: 0xc000001a40n,
    pid: 200
  })])
  for (const s of yield* captured.take(3)) {
    const parent = s.parentSpanId === undefined ? "root" : `parent=${s.parentSpanId}`
    const micros = (s.endMonoNs - s.startMonoNs) / 1000n
    yield* Console.log(`span [${s.probe}] pid=${s.pid} ${s.kind} "${s.name}" ${micros}µs ${parent}`)
  }
  const loads = (yield* kernel.events).filter((e) => e._tag === "Load")
  yield* Console.log("loads (go_context once):", loads.map((e) => e._tag === "Load" ? e.object : "").join(", "))
  yield* Console.log("targets:", JSON.stringify(yield* manager.targets))
}).pipe(Effect.provide(Agent))

Effect.runPromise(program).then(() => console.log("stopped: every probe detached and closed"))
