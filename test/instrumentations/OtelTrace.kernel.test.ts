/**
 * The otel_trace probe on the real kernel (root): the fixture (test/fixtures/go/otelapi, an HTTP server whose /work
 * handler makes spans by hand with the OpenTelemetry Go API and no SDK) with the agent's Manager attaching go_context,
 * nethttp_server, nethttp_client and otel_trace. One request gives six spans in one trace: the SERVER span of /work,
 * the manual "work" span under it (its start-option and SetAttributes attributes, two events, status Ok), the HTTP
 * CLIENT span made with the manual span's context under "work", the SERVER span of /leaf under that, the nested
 * manual span (renamed, CLIENT kind, RecordError's exception event, status Error) under "work", and the "job" span a
 * worker goroutine (running for no request) starts with the context it is handed, under "work". Afterwards no span is
 * left open in the probe's maps. Built with go.opentelemetry.io/otel v1.47.0 (Go 1.26.8, 1.27.3) and v1.30.0 (Go
 * 1.25.9), the range's ends, v1.38.0 (Go 1.26.8), and a -buildmode=pie build. /bounds: what does not fit is dropped
 * and counted. With the sampler always_off nothing is recorded; with a
 * TracerProvider set (Start forwards to it) no manual span is. A build with v1.29.0 is "not supported" with the
 * reason; a stripped build applies with the shipped offsets table's offsets (equal to the DWARF build's).
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as path from "node:path"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as NetHttpClient from "../../src/instrumentations/NetHttpClient.ts"
import * as NetHttpServer from "../../src/instrumentations/NetHttpServer.ts"
import * as OtelTrace from "../../src/instrumentations/OtelTrace.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as TargetEvent from "../../src/manager/TargetEvent.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedSpans } from "../../src/probe/ProbeTest.ts"
import type { SpanData } from "../../src/probe/Telemetry.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import { TargetAnalysis } from "../../src/target/GoBinary.ts"
import { buildOtelApi, PINNED } from "./OtelTraceFixture.ts"

const root = path.resolve(import.meta.dirname, "../..")

/**
 * Each build: Go release, otel release (the fixture's pinned one, or another through a copy), and one
 * position-independent build (the WithSpanKind closures and the type data found relative to the probe addresses).
 */
const builds = [
  { go: "1.26.8", otel: PINNED, pie: false },
  { go: "1.27.3", otel: PINNED, pie: false },
  { go: "1.25.9", otel: "1.30.0", pie: false },
  { go: "1.26.8", otel: "1.38.0", pie: false },
  { go: "1.26.8", otel: PINNED, pie: true }
] as const
const key = (b: { readonly go: string; readonly otel: string; readonly pie: boolean }) =>
  `${b.go}/${b.otel}${b.pie ? "/pie" : ""}`
const binaries = new Map<string, string>()
const pinned = () => binaries.get(key(builds[0]))!
let stripped = ""
let tooOld = ""
const procs: Array<ChildProcess> = []

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  for (const b of builds) {
    binaries.set(key(b), buildOtelApi(b.go, b.pie ? { pie: true } : b.otel === PINNED ? {} : { otel: b.otel }))
  }
  stripped = buildOtelApi("1.26.8", { stripped: true })
  tooOld = buildOtelApi("1.26.8", { otel: "1.29.0" })
}, 900_000)

afterAll(() => {
  for (const p of procs) p.kill("SIGKILL")
})

/** Start the fixture and wait for its "listening on <addr>" line. */
const start = (exe: string, args: ReadonlyArray<string> = []) =>
  Effect.callback<{ readonly pid: number; readonly addr: string }>((resume) => {
    const child = spawn(exe, ["-addr", "127.0.0.1:0", ...args], { stdio: ["ignore", "pipe", "inherit"] })
    procs.push(child)
    let out = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const m = /listening on (\S+)/.exec(out)
      if (m !== null) resume(Effect.succeed({ pid: child.pid!, addr: m[1]! }))
    })
    child.on("exit", (code) => resume(Effect.die(new Error(`${exe} exited with ${code}`))))
  })

const get = (url: string) =>
  Effect.promise(async () => {
    const res = await fetch(url, { signal: AbortSignal.timeout(15_000) })
    return { status: res.status, body: (await res.text()).trim() }
  })

const agentWith = (sampler: TracingConfig.Sampler) =>
  ManagerM.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      OtelTrace.OtelTrace.layer,
      NetHttpServer.NetHttpServer.layer,
      NetHttpClient.NetHttpClient.layer
    )),
    Layer.provideMerge(Layer.mergeAll(
      BpfLive.layer,
      ProbeTest.layerSink,
      ProbeTest.layerTargets,
      TracingConfig.layer(sampler),
      GoBinary.layer
    ))
  )
const agent = agentWith(TracingConfig.defaultSampler)

/**
 * Entries of `pid` in the kernel's hash maps named `name` (the kernel keeps 15 characters): their keys start with the
 * tgid (little-endian u32). Fails when no such map exists, so a count of 0 cannot be vacuous.
 */
const entriesOf = (pid: number, name: string): number => {
  const maps = JSON.parse(execFileSync("bpftool", ["-j", "map", "show"]).toString()) as Array<
    { readonly id: number; readonly name?: string }
  >
  const found = maps.filter((m) => m.name === name.slice(0, 15))
  assert.isAbove(found.length, 0, `no map ${name}`)
  const tgid = Buffer.alloc(4)
  tgid.writeUInt32LE(pid)
  const want = [...tgid].map((b) => `0x${b.toString(16).padStart(2, "0")}`).join(" ")
  let n = 0
  for (const m of found) {
    const entries = JSON.parse(execFileSync("bpftool", ["-j", "map", "dump", "id", String(m.id)]).toString()) as Array<
      { readonly key: ReadonlyArray<string> }
    >
    n += entries.filter((e) => e.key.slice(0, 4).join(" ") === want).length
  }
  return n
}

/** Attach the agent's probes to a started fixture; the probes that applied. */
const attach = (pid: number) =>
  Effect.gen(function*() {
    const manager = yield* Manager
    yield* manager.handle(TargetEvent.TargetEvent.Started({ target: yield* (yield* TargetAnalysis).analyzePid(pid) }))
    return (yield* manager.targets).map((t) => [...t.probes].sort())
  })

const one = (spans: ReadonlyArray<SpanData>, pred: (s: SpanData) => boolean, what: string) => {
  const found = spans.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} found`)
  return found[0]!
}

/** The manual spans' parts the fixture decides (ids and times aside). */
const manual = (s: SpanData) => ({
  probe: s.probe,
  name: s.name,
  kind: s.kind,
  attributes: s.attributes,
  status: s.status,
  events: s.events?.map((e) => ({ name: e.name, attributes: e.attributes })),
  dropped: [s.droppedAttributesCount, s.droppedEventsCount]
})

describe.each(builds)("otel_trace on Go $go, go.opentelemetry.io/otel v$otel, pie: $pie", (build) => {
  it.live("manual spans in the request's trace: under the server span, over the client span, nested", () =>
    Effect.gen(function*() {
      const app = yield* start(binaries.get(key(build))!)
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      const target = yield* analysis.analyzePid(app.pid)
      assert.strictEqual(target.modules.get(OtelTrace.MODULE), `v${build.otel}`)
      yield* manager.handle(TargetEvent.TargetEvent.Started({ target }))
      assert.deepStrictEqual((yield* manager.targets).map((t) => [...t.probes].sort()), [
        ["go_context", "nethttp_client", "nethttp_server", "otel_trace"]
      ])
      const res = yield* get(`http://${app.addr}/work?self=${app.addr}`)
      assert.deepStrictEqual(res, { status: 200, body: "ok" })

      const spans = yield* (yield* CapturedSpans).take(6).pipe(Effect.timeout("15 seconds"))
      const server = one(spans, (s) => s.kind === "server" && s.attributes["url.path"] === "/work", "/work")
      const work = one(spans, (s) => s.probe === "otel_trace" && s.name === "work", "work")
      const client = one(spans, (s) => s.probe === "nethttp_client", "client")
      const leaf = one(spans, (s) => s.kind === "server" && s.attributes["url.path"] === "/leaf", "/leaf")
      const nested = one(spans, (s) => s.probe === "otel_trace" && s.name === "nested renamed", "nested")
      const job = one(spans, (s) => s.probe === "otel_trace" && s.name === "job", "job")

      assert.deepStrictEqual(manual(work), {
        probe: "otel_trace",
        name: "work",
        kind: "internal",
        attributes: {
          "app.user": "alice",
          "app.items": 3,
          "app.cached": false,
          "app.ratio": 0.25,
          "app.delta": -42
        },
        status: { code: "ok" },
        events: [
          { name: "cache miss", attributes: { "cache.key": "k1" } },
          { name: "done", attributes: {} }
        ],
        // app.tags, a string slice.
        dropped: [1, undefined]
      })
      assert.deepStrictEqual(manual(nested), {
        probe: "otel_trace",
        name: "nested renamed",
        kind: "client",
        attributes: {},
        status: { code: "error", message: "nested failed" },
        events: [
          { name: "exception", attributes: { "exception.type": "*errors.errorString", "exception.message": "boom" } }
        ],
        dropped: [undefined, undefined]
      })
      assert.deepStrictEqual(manual(job), {
        probe: "otel_trace",
        name: "job",
        kind: "internal",
        attributes: {},
        status: { code: "unset" },
        dropped: [undefined, undefined],
        events: undefined
      })
      // Parentage: server -> work -> (client -> leaf server, nested, job on the worker goroutine by its context).
      const parent = (s: SpanData) => [s.traceId, s.parentSpanId, s.parentIsRemote]
      assert.deepStrictEqual(parent(work), [server.traceId, server.spanId, false])
      assert.deepStrictEqual(parent(client), [server.traceId, work.spanId, false])
      assert.deepStrictEqual([leaf.traceId, leaf.parentSpanId], [server.traceId, client.spanId])
      assert.deepStrictEqual(parent(nested), [server.traceId, work.spanId, false])
      assert.deepStrictEqual(parent(job), [server.traceId, work.spanId, false])
      // Times nest as the handler ran them; events inside their span.
      const within = (inner: SpanData, outer: SpanData) =>
        outer.startMonoNs <= inner.startMonoNs && inner.endMonoNs <= outer.endMonoNs
      assert.isTrue(within(work, server) && within(client, work) && within(nested, work) && within(job, work))
      assert.isTrue(client.endMonoNs <= nested.startMonoNs && nested.endMonoNs <= job.startMonoNs)
      for (const s of [work, nested, job]) {
        assert.strictEqual(s.pid, app.pid)
        for (const e of s.events ?? []) assert.isTrue(s.startMonoNs <= e.timeMonoNs && e.timeMonoNs <= s.endMonoNs)
      }

      // A request without manual spans: only its server span (nothing left active from the last one).
      assert.deepStrictEqual(yield* get(`http://${app.addr}/plain`), { status: 200, body: "plain" })
      const [plain] = yield* (yield* CapturedSpans).take(1).pipe(Effect.timeout("15 seconds"))
      assert.deepStrictEqual([plain!.kind, plain!.attributes["url.path"], plain!.parentSpanId], [
        "server",
        "/plain",
        undefined
      ])
      // Every span ended: none open, none starting.
      assert.strictEqual(entriesOf(app.pid, "otel_spans"), 0, "open spans")
      assert.strictEqual(entriesOf(app.pid, "otel_starting"), 0, "spans starting")
    }).pipe(Effect.provide(agent)), 60_000)
})

describe(`otel_trace on Go 1.26.8: bounds`, () => {
  it.live("attributes and events past the bounds dropped and counted; Error after Ok ignored; a long key, value", () =>
    Effect.gen(function*() {
      const app = yield* start(pinned())
      assert.deepStrictEqual(yield* attach(app.pid), [["go_context", "nethttp_client", "nethttp_server", "otel_trace"]])
      assert.deepStrictEqual(yield* get(`http://${app.addr}/bounds`), { status: 200, body: "ok" })
      const spans = yield* (yield* CapturedSpans).take(3).pipe(Effect.timeout("15 seconds"))
      const server = one(spans, (s) => s.kind === "server", "server")
      const many = one(spans, (s) => s.name === "many", "many")
      const long = one(spans, (s) => s.name === "long", "long")
      const n = (i: number) => `n${String(i).padStart(2, "0")}`
      assert.deepStrictEqual(manual(many), {
        probe: "otel_trace",
        name: "many",
        kind: "internal",
        attributes: {
          ...Object.fromEntries(Array.from({ length: OtelTrace.ATTRS }, (_, i) => [n(i), i]))
        },
        status: { code: "ok" },
        events: Array.from({ length: OtelTrace.EVENTS }, (_, i) => ({ name: `e${i}`, attributes: {} })),
        dropped: [20 - OtelTrace.ATTRS, 6 - OtelTrace.EVENTS]
      })
      assert.deepStrictEqual(manual(long), {
        probe: "otel_trace",
        name: "long",
        kind: "internal",
        attributes: { "long.value": "x".repeat(OtelTrace.STR_CAP) },
        status: { code: "unset" },
        events: undefined,
        dropped: [1, undefined]
      })
      for (const s of [many, long]) assert.strictEqual(s.parentSpanId, server.spanId)
    }).pipe(Effect.provide(agent)), 60_000)
})

describe(`otel_trace on Go 1.26.8: when not to record`, () => {
  it.live("sampler always_off: no record, nothing left open", () =>
    Effect.gen(function*() {
      const app = yield* start(pinned())
      assert.deepStrictEqual(yield* attach(app.pid), [["go_context", "nethttp_client", "nethttp_server", "otel_trace"]])
      assert.deepStrictEqual(yield* get(`http://${app.addr}/work?self=${app.addr}`), { status: 200, body: "ok" })
      yield* Effect.sleep("500 millis")
      const stats = yield* (yield* Manager).stats
      assert.strictEqual(stats.find((s) => s.probe === "otel_trace")!.records, 0)
      assert.deepStrictEqual(yield* (yield* CapturedSpans).all, [])
      assert.strictEqual(entriesOf(app.pid, "otel_spans"), 0, "open spans")
      assert.strictEqual(entriesOf(app.pid, "otel_starting"), 0, "spans starting")
    }).pipe(Effect.provide(agentWith({ root: "always_off", ratio: 1, parentBased: true }))), 60_000)

  it.live("a TracerProvider set (an SDK's place): Start forwards to it, no manual span recorded", () =>
    Effect.gen(function*() {
      const app = yield* start(pinned(), ["-sdk"])
      assert.deepStrictEqual(yield* attach(app.pid), [["go_context", "nethttp_client", "nethttp_server", "otel_trace"]])
      assert.deepStrictEqual(yield* get(`http://${app.addr}/work?self=${app.addr}`), { status: 200, body: "ok" })
      // The automatic spans only: /work's, the client call's (now straight under /work's) and /leaf's.
      const spans = yield* (yield* CapturedSpans).take(3).pipe(Effect.timeout("15 seconds"))
      const server = one(spans, (s) => s.kind === "server" && s.attributes["url.path"] === "/work", "/work")
      const client = one(spans, (s) => s.probe === "nethttp_client", "client")
      assert.deepStrictEqual(spans.map((s) => s.probe).sort(), ["nethttp_client", "nethttp_server", "nethttp_server"])
      assert.strictEqual(client.parentSpanId, server.spanId)
      yield* Effect.sleep("300 millis")
      const stats = yield* (yield* Manager).stats
      assert.strictEqual(stats.find((s) => s.probe === "otel_trace")!.records, 0)
      assert.strictEqual(entriesOf(app.pid, "otel_spans"), 0, "open spans")
    }).pipe(Effect.provide(agent)), 60_000)
})

describe("otel_trace: not supported", () => {
  const reason = (exe: string) =>
    Effect.gen(function*() {
      const app = yield* start(exe)
      const manager = yield* Manager
      const target = yield* (yield* TargetAnalysis).analyzePid(app.pid)
      const a = manager.inspect(target).find((i) => i.probe === "otel_trace")!.applicability
      return a._tag === "NotApplicable" ? a.reason : a._tag
    })

  it.live("go.opentelemetry.io/otel v1.29.0: outside the range", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* reason(tooOld),
        "go.opentelemetry.io/otel v1.29.0 is outside the supported range >=1.30.0 <2"
      )
    }).pipe(Effect.provide(agent)))

  it.live("a stripped build: no DWARF, yet it applies, with the offsets table's offsets equal to DWARF's", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const offsets = (exe: string) =>
        Effect.gen(function*() {
          const app = yield* start(exe)
          const target = yield* (yield* TargetAnalysis).analyzePid(app.pid)
          const a = manager.inspect(target).find((i) => i.probe === "otel_trace")!.applicability
          assert.strictEqual(a._tag, "Applies", JSON.stringify(a))
          return { dwarf: target.binary.hasDwarf, offsets: a._tag === "Applies" ? a.offsets : {} }
        })
      const fromTable = yield* offsets(stripped)
      const fromDwarf = yield* offsets(pinned())
      assert.deepStrictEqual([fromTable.dwarf, fromDwarf.dwarf], [false, true])
      assert.deepStrictEqual(fromTable.offsets, fromDwarf.offsets)
    }).pipe(Effect.provide(agent)))
})
