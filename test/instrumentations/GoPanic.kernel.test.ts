/**
 * The go/panic probe on the real kernel (root), per supported Go release: build test/fixtures/go/panics with that
 * toolchain, run it, attach go_context + nethttp_server + go_panic through the Manager, request each panicking route
 * over loopback, and check the log records (one ERROR per panic, one WARN per recovery, tied to the request's span)
 * and the server spans net/http's recovery ends with status ERROR and an exception event.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as http2 from "node:http2"
import * as path from "node:path"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as GoPanic from "../../src/instrumentations/GoPanic.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as TargetEvent from "../../src/manager/TargetEvent.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedLogs, CapturedSpans } from "../../src/probe/ProbeTest.ts"
import type { LogData, SpanData } from "../../src/probe/Telemetry.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import { TargetAnalysis } from "../../src/target/GoBinary.ts"
import { pageOut } from "./ColdPages.ts"
import { buildPanics } from "./fixtures.ts"

const root = path.resolve(import.meta.dirname, "../..")
const versions = ["1.25.9", "1.26.8", "1.27.3"]
const binaries = new Map<string, string>()
const stripped = new Map<string, string>()
const procs: Array<ChildProcess> = []

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  for (const v of versions) {
    binaries.set(v, buildPanics(v))
    stripped.set(v, buildPanics(v, { stripped: true }))
  }
}, 600_000)

afterAll(() => {
  for (const p of procs) p.kill("SIGKILL")
})

/** Start the fixture and wait for its "listening on <addr>" line. */
const start = (exe: string) =>
  Effect.callback<{ readonly pid: number; readonly addr: string }>((resume) => {
    // stderr ignored: net/http prints a stack trace per recovered panic.
    const child = spawn(exe, ["-addr", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "ignore"] })
    procs.push(child)
    let out = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const m = /listening on (\S+)/.exec(out)
      if (m !== null) resume(Effect.succeed({ pid: child.pid!, addr: m[1]! }))
    })
    child.on("exit", (code) => resume(Effect.die(new Error(`${exe} exited with ${code}`))))
  })

/** The status, or "closed" when the server closed the connection without an answer (a handler's panic). */
const get = (url: string) =>
  Effect.promise(async () => {
    try {
      const res = await fetch(url)
      await res.text()
      return res.status
    } catch {
      return "closed" as const
    }
  })

/**
 * Entries of `pid` in the kernel maps named `name` (the kernel keeps 15 characters) of type `type`, from bpftool:
 * keys of the per-goroutine maps start with the tgid (little-endian u32). Other suites' objects have maps of the same
 * name; their keys carry other pids. Fails when no such map exists, so the count cannot be vacuously 0.
 */
const entriesOf = (pid: number, name: string, type: string): number => {
  const maps = JSON.parse(execFileSync("bpftool", ["-j", "map", "show"]).toString()) as Array<
    { readonly id: number; readonly name?: string; readonly type: string }
  >
  const mine = Buffer.alloc(4)
  mine.writeUInt32LE(pid)
  const want = [...mine].map((b) => `0x${b.toString(16).padStart(2, "0")}`).join(" ")
  const found = maps.filter((m) => m.name === name.slice(0, 15) && m.type === type)
  assert.isAbove(found.length, 0, `no ${type} map ${name}`)
  let n = 0
  for (const m of found) {
    const entries = JSON.parse(execFileSync("bpftool", ["-j", "map", "dump", "id", String(m.id)]).toString()) as Array<
      { readonly key: unknown }
    >
    for (const e of entries) {
      assert.isArray(e.key, "bpftool dump: raw key bytes")
      if ((e.key as Array<string>).slice(0, 4).join(" ") === want) n++
    }
  }
  return n
}

/** An HTTP/2 request over cleartext (prior knowledge): the status, or "reset" when the server reset the stream. */
const getH2 = (base: string, path: string) =>
  Effect.promise(() =>
    new Promise<number | "reset">((resolve) => {
      const session = http2.connect(base)
      session.on("error", () => {})
      const req = session.request({ ":path": path })
      let status: number | undefined
      req.on("response", (headers) => void (status = Number(headers[":status"])))
      req.on("error", () => {})
      req.on("close", () => {
        session.close()
        resolve(status ?? "reset")
      })
      req.resume()
      req.end()
    })
  )

/** The Manager over go_panic (given as `probe`, with what it brings: go_context, the net/http server probe). */
const agentWith = (probe: typeof GoPanic.GoPanic.layer) =>
  ManagerM.layer.pipe(
    Layer.provideMerge(probe),
    Layer.provideMerge(Layer.mergeAll(
      BpfLive.layer,
      ProbeTest.layerSink,
      ProbeTest.layerTargets,
      TracingConfig.layer(TracingConfig.defaultSampler),
      GoBinary.layer
    ))
  )

const agent = agentWith(GoPanic.GoPanic.layer)

/** With `goroutines: false`: go_context's goroutine tracking is not attached (nothing else here uses it). */
const agentWithoutGoroutines = agentWith(GoPanic.GoPanic.layerWith({ goroutines: false }))

/**
 * Attaches to a fresh app of `version`, requests /crash (a goroutine the handler starts panics, unrecovered: the
 * process exits 2) and takes the two log records that says.
 */
const crash = (version: string) =>
  Effect.gen(function*() {
    const app = yield* start(binaries.get(version)!)
    const analysis = yield* TargetAnalysis
    const manager = yield* Manager
    yield* manager.handle(TargetEvent.TargetEvent.Started({ target: yield* analysis.analyzePid(app.pid) }))
    const child = procs.find((p) => p.pid === app.pid)!
    const exited = Effect.promise(() =>
      new Promise<number | null>((resolve) =>
        child.exitCode !== null ? resolve(child.exitCode) : child.once("exit", (code) => resolve(code))
      )
    )
    assert.strictEqual(yield* get(`http://${app.addr}/crash`), "closed")
    assert.strictEqual(yield* exited, 2)
    const logs = yield* (yield* CapturedLogs).take(2).pipe(Effect.timeout("15 seconds"))
    return { app, logs }
  })

const one = <A>(items: ReadonlyArray<A>, pred: (a: A) => boolean, what: string): A => {
  const found = items.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} found`)
  return found[0]!
}

/** Each panicking route: its exception attributes, as Go's own "http: panic serving" line would show them. */
const routes = [
  { path: "/panic/string", route: "/panic/string", type: "string", message: "boom: a string" },
  { path: "/panic/error", route: "/panic/error", type: "*errors.errorString", message: "boom: errors.New" },
  { path: "/panic/wrapped", route: "/panic/wrapped", type: "*fmt.wrapError", message: "boom: wrapped: unexpected EOF" },
  {
    path: "/panic/nilmap",
    route: "/panic/nilmap",
    type: "runtime.plainError",
    message: "assignment to entry in nil map"
  },
  {
    path: "/panic/nilptr?nil=1",
    route: "/panic/nilptr",
    type: "runtime.errorString",
    message: "runtime error: invalid memory address or nil pointer dereference"
  },
  {
    path: "/panic/index?i=5",
    route: "/panic/index",
    type: "runtime.boundsError",
    message: "runtime error: index out of range [5] with length 3"
  }
] as const

/**
 * Every panicking route, /recover, /middleware and /ok on a fresh app of `version`: the log records and server spans
 * each gives, exactly. `cold`: the app's read-only data is paged out before each request (ColdPages.ts), so the panic
 * values' types, the constants panic("...") is given and the error types' names are on pages the uprobe cannot read.
 */
const everyPanic = (version: string, cold: boolean) =>
  Effect.gen(function*() {
    const app = yield* start(binaries.get(version)!)
    const analysis = yield* TargetAnalysis
    const manager = yield* Manager
    yield* manager.handle(TargetEvent.TargetEvent.Started({ target: yield* analysis.analyzePid(app.pid) }))
    assert.deepStrictEqual((yield* manager.targets).map((t) => [...t.probes].sort()), [
      ["go_context", "go_panic", "nethttp_server"]
    ])
    const base = `http://${app.addr}`
    const cooled = <A>(request: Effect.Effect<A>) =>
      Effect.suspend(() => {
        if (cold) assert.isAbove(pageOut(app.pid), 0)
        return request
      })
    for (const r of routes) assert.strictEqual(yield* cooled(get(`${base}${r.path}`)), "closed", r.path)
    assert.strictEqual(yield* cooled(get(`${base}/recover`)), 200)
    assert.strictEqual(yield* cooled(get(`${base}/middleware`)), 500)
    assert.strictEqual(yield* get(`${base}/ok`), 200)

    // Per panicking route: a server span (ended by the panic probe); plus /recover's, /middleware's and /ok's own.
    const spans = yield* (yield* CapturedSpans).take(routes.length + 3).pipe(Effect.timeout("15 seconds"))
    // Per panic: ERROR at the panic, WARN when recovered (by net/http, /recover's goroutine, the middleware).
    const logs = yield* (yield* CapturedLogs).take(2 * (routes.length + 2)).pipe(Effect.timeout("15 seconds"))
    const port = Number(app.addr.split(":")[1])

    for (const r of routes) {
      const span = one(spans, (s: SpanData) => s.attributes["url.path"] === r.path.split("?")[0], r.path)
      assert.strictEqual(span.probe, "go_panic")
      assert.strictEqual(span.name, `GET ${r.route}`)
      assert.strictEqual(span.kind, "server")
      assert.strictEqual(span.pid, app.pid)
      assert.deepStrictEqual(span.status, { code: "error", message: `panic: ${r.message}` })
      assert.deepStrictEqual(span.attributes, {
        "http.request.method": "GET",
        "url.path": r.path.split("?")[0],
        "url.scheme": "http",
        "http.route": r.route,
        "server.address": "127.0.0.1",
        "server.port": port,
        "network.peer.address": "127.0.0.1",
        "network.peer.port": span.attributes["network.peer.port"],
        "network.protocol.version": "1.1",
        "error.type": r.type
      })
      assert.isNumber(span.attributes["network.peer.port"])
      assert.strictEqual(span.events?.length, 1)
      const event = span.events![0]!
      assert.strictEqual(event.name, "exception")
      assert.deepStrictEqual(event.attributes, { "exception.type": r.type, "exception.message": r.message })
      assert.isTrue(span.startMonoNs < event.timeMonoNs && event.timeMonoNs < span.endMonoNs)

      const forSpan = logs.filter((l: LogData) => l.spanId === span.spanId)
      assert.deepStrictEqual(forSpan.map((l) => [l.severity, l.body]), [
        ["error", `panic: ${r.message}`],
        ["warn", `recovered from panic: ${r.message}`]
      ], r.path)
      for (const l of forSpan) {
        assert.strictEqual(l.probe, "go_panic")
        assert.strictEqual(l.pid, app.pid)
        assert.strictEqual(l.traceId, span.traceId)
        assert.strictEqual(l.traceFlags, 1)
        assert.deepStrictEqual(l.attributes, { "exception.type": r.type, "exception.message": r.message })
      }
      assert.strictEqual(forSpan[0]!.timeMonoNs, event.timeMonoNs)
    }

    // The goroutine /recover starts inherits the request's span (go_context), so its panic is tied to it; the
    // handler returns normally and the server probe ends its span, status unset.
    const recover = one(spans, (s) => s.attributes["url.path"] === "/recover", "/recover")
    assert.strictEqual(recover.probe, "nethttp_server")
    assert.deepStrictEqual(recover.status, { code: "unset" })
    assert.strictEqual(recover.attributes["http.response.status_code"], 200)
    const recovered = logs.filter((l) => l.spanId === recover.spanId)
    assert.deepStrictEqual(recovered.map((l) => [l.severity, l.body, l.attributes]), [
      ["error", "panic: recovered in a goroutine", {
        "exception.type": "string",
        "exception.message": "recovered in a goroutine"
      }],
      ["warn", "recovered from panic: recovered in a goroutine", {
        "exception.type": "string",
        "exception.message": "recovered in a goroutine"
      }]
    ])
    const ok = one(spans, (s) => s.attributes["url.path"] === "/ok", "/ok")
    assert.strictEqual(ok.probe, "nethttp_server")

    // A middleware recovers the handler's panic: the request ends normally (500), so the server probe ends its
    // span; the panic is only in the log records.
    const middleware = one(spans, (s) => s.attributes["url.path"] === "/middleware", "/middleware")
    assert.strictEqual(middleware.probe, "nethttp_server")
    assert.deepStrictEqual(middleware.status, { code: "error", message: "HTTP 500" })
    assert.isUndefined(middleware.events)
    assert.deepStrictEqual(logs.filter((l) => l.spanId === middleware.spanId).map((l) => [l.severity, l.body]), [
      ["error", "panic: caught by middleware"],
      ["warn", "recovered from panic: caught by middleware"]
    ])

    const stats = yield* manager.stats
    for (const s of stats) assert.strictEqual(s.decodeErrors, 0, `${s.probe} decode errors`)
    const panics = stats.find((s) => s.probe === "go_panic")!
    assert.strictEqual(panics.records, 2 * (routes.length + 2) + routes.length)
    // Nothing left behind: every panicked request's in-flight entry is gone, every panic was recovered.
    assert.strictEqual(entriesOf(app.pid, "nethttp_server_inflight", "lru_hash"), 0, "in-flight requests")
    assert.strictEqual(entriesOf(app.pid, "go_panic_pending", "lru_hash"), 0, "pending panics")
    // ...and every request context registered as its span's (go_context.h) is unregistered, panicked ones too.
    assert.strictEqual(entriesOf(app.pid, "ps_ctx_spans", "lru_hash"), 0, "registered request contexts")
  }).pipe(Effect.provide(agent))

describe.each(versions)("go/panic on Go %s", (version) => {
  it.live("a log record per panic and recovery, and the server span net/http's recovery ends", () =>
    everyPanic(version, false), 60_000)

  it.live("the same with the program's read-only data paged out before each request (read from the process)", () =>
    everyPanic(version, true), 60_000)

  it.live("HTTP/2: the handler's own goroutine panics, the HTTP/2 server recovers, the span is ended the same", () =>
    Effect.gen(function*() {
      const app = yield* start(binaries.get(version)!)
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      yield* manager.handle(TargetEvent.TargetEvent.Started({ target: yield* analysis.analyzePid(app.pid) }))
      const base = `http://${app.addr}`
      assert.strictEqual(yield* getH2(base, "/panic/string"), "reset")
      assert.strictEqual(yield* getH2(base, "/ok"), 200)
      const spans = yield* (yield* CapturedSpans).take(2).pipe(Effect.timeout("15 seconds"))
      const failed = one(spans, (s) => s.attributes["url.path"] === "/panic/string", "/panic/string over HTTP/2")
      assert.deepStrictEqual(
        [failed.probe, failed.name, failed.attributes["network.protocol.version"], failed.attributes["error.type"]],
        ["go_panic", "GET /panic/string", "2", "string"]
      )
      assert.deepStrictEqual(failed.status, { code: "error", message: "panic: boom: a string" })
      assert.deepStrictEqual(failed.events?.map((e) => [e.name, e.attributes]), [
        ["exception", { "exception.type": "string", "exception.message": "boom: a string" }]
      ])
      const ok = one(spans, (s) => s.attributes["url.path"] === "/ok", "/ok over HTTP/2")
      assert.deepStrictEqual([ok.probe, ok.status], ["nethttp_server", { code: "unset" }])
      const logs = yield* (yield* CapturedLogs).take(2).pipe(Effect.timeout("15 seconds"))
      assert.deepStrictEqual(logs.map((l) => [l.severity, l.spanId]), [
        ["error", failed.spanId],
        ["warn", failed.spanId]
      ])
      assert.strictEqual(entriesOf(app.pid, "nethttp_server_inflight", "lru_hash"), 0, "in-flight requests")
      assert.strictEqual(entriesOf(app.pid, "go_panic_pending", "lru_hash"), 0, "pending panics")
      // ...and every request context registered as its span's (go_context.h) is unregistered, panicked ones too.
      assert.strictEqual(entriesOf(app.pid, "ps_ctx_spans", "lru_hash"), 0, "registered request contexts")
    }).pipe(Effect.provide(agent)), 60_000)

  it.live("an unrecovered panic: ERROR then FATAL records arrive though the process exits at once", () =>
    Effect.gen(function*() {
      const { app, logs } = yield* crash(version)
      const exception = { "exception.type": "string", "exception.message": "unrecovered in a goroutine" }
      assert.deepStrictEqual(logs.map((l) => [l.severity, l.body, l.attributes, l.pid]), [
        ["error", "panic: unrecovered in a goroutine", exception, app.pid],
        ["fatal", "panic not recovered, the process exits: unrecovered in a goroutine", exception, app.pid]
      ])
      // The goroutine was started by the handler: its panic is tied to the request's span (which never ends).
      for (const l of logs) {
        assert.strictEqual(l.traceFlags, 1)
        assert.match(l.spanId ?? "", /^[0-9a-f]{16}$/)
        assert.strictEqual(l.spanId, logs[0]!.spanId)
      }
      assert.isTrue(logs[0]!.timeMonoNs < logs[1]!.timeMonoNs)
      yield* Effect.sleep("300 millis")
      assert.strictEqual((yield* (yield* CapturedLogs).all).length, 2)
    }).pipe(Effect.provide(agent)), 60_000)

  it.live("goroutines: false: a crash in a goroutine a handler started is recorded without the request's span", () =>
    Effect.gen(function*() {
      const { logs } = yield* crash(version)
      assert.deepStrictEqual(logs.map((l) => [l.severity, l.body]), [
        ["error", "panic: unrecovered in a goroutine"],
        ["fatal", "panic not recovered, the process exits: unrecovered in a goroutine"]
      ])
      for (const l of logs) assert.isUndefined(l.spanId)
    }).pipe(Effect.provide(agentWithoutGoroutines)), 60_000)

  it.live("stripped binary: type names from the section of the type data, messages as unstripped", () =>
    Effect.gen(function*() {
      const app = yield* start(stripped.get(version)!)
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      yield* manager.handle(TargetEvent.TargetEvent.Started({ target: yield* analysis.analyzePid(app.pid) }))
      assert.deepStrictEqual((yield* manager.targets).map((t) => [...t.probes].sort()), [
        ["go_context", "go_panic", "nethttp_server"]
      ])
      assert.strictEqual(yield* get(`http://${app.addr}/panic/wrapped`), "closed")
      const [span] = yield* (yield* CapturedSpans).take(1).pipe(Effect.timeout("15 seconds"))
      assert.strictEqual(span!.name, "GET /panic/wrapped")
      assert.strictEqual(span!.attributes["error.type"], "*fmt.wrapError")
      assert.deepStrictEqual(span!.events?.[0]?.attributes, {
        "exception.type": "*fmt.wrapError",
        "exception.message": "boom: wrapped: unexpected EOF"
      })
      const logs = yield* (yield* CapturedLogs).take(2).pipe(Effect.timeout("15 seconds"))
      assert.deepStrictEqual(logs.map((l) => [l.severity, l.spanId, l.attributes["exception.type"]]), [
        ["error", span!.spanId, "*fmt.wrapError"],
        ["warn", span!.spanId, "*fmt.wrapError"]
      ])
    }).pipe(Effect.provide(agent)), 60_000)
})
