/**
 * The gRPC probe on the real kernel (root): build test/fixtures/go/grpc, run its gRPC server and its HTTP-fronted
 * gRPC client as two processes, attach go_context + nethttp_server + grpc through the Manager, drive calls through
 * the HTTP front over loopback, and check the spans exactly: the front's server span, the gRPC CLIENT span under it,
 * the gRPC SERVER span in the other process under the client span (connection map), or under a traceparent sent as
 * metadata; unary OK, NotFound, UNIMPLEMENTED, a server stream, a bidi stream, concurrent calls on one HTTP/2
 * connection; the duration metrics; no per-call map entry left behind. A stripped build is instrumented with the
 * shipped offsets table's offsets (equal to the DWARF build's), and refused when the table does not cover it.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as path from "node:path"
import { Effect, Layer, Result } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as Grpc from "../../src/instrumentations/Grpc.ts"
import * as NetHttpServer from "../../src/instrumentations/NetHttpServer.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as TargetEvent from "../../src/manager/TargetEvent.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedMeasurements, CapturedSpans } from "../../src/probe/ProbeTest.ts"
import type { SpanData } from "../../src/probe/Telemetry.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import { TargetAnalysis } from "../../src/target/GoBinary.ts"
import * as Offsets from "../../src/target/Offsets.ts"
import { buildGrpc } from "./fixtures.ts"

const root = path.resolve(import.meta.dirname, "../..")
/**
 * Go release x grpc-go release: the fixture pins v1.85.0 (which needs Go >= 1.26); v1.83.2 still builds with Go 1.25.
 * One release of each of the server stream's layouts (bpf/grpc.bpf.c grpc_stream): v1.77.0 (ServerStream embeds
 * Stream), v1.72.2 (embeds *Stream), v1.65.1 and v1.60.0, the range's low end (handleStream gets the *Stream; the
 * exported WriteStatus).
 */
const builds = [
  { go: "1.26.8", grpc: "v1.85.0" },
  { go: "1.27.3", grpc: "v1.85.0" },
  { go: "1.26.8", grpc: "v1.83.2" },
  { go: "1.25.9", grpc: "v1.83.2" },
  { go: "1.26.8", grpc: "v1.77.0" },
  { go: "1.26.8", grpc: "v1.72.2" },
  { go: "1.25.9", grpc: "v1.65.1" },
  { go: "1.26.8", grpc: "v1.60.0" }
] as const
const binaries = new Map<string, string>()
let stripped = ""
const procs: Array<ChildProcess> = []
const INCOMING_TRACE = "0af7651916cd43dd8448eb211c80319c"
const INCOMING_SPAN = "b7ad6b7169203331"

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  for (const b of builds) {
    binaries.set(`${b.go} ${b.grpc}`, buildGrpc(b.go, b.grpc === "v1.85.0" ? {} : { grpc: b.grpc }))
  }
  stripped = buildGrpc("1.26.8", { stripped: true })
}, 600_000)

afterAll(() => {
  for (const p of procs) p.kill("SIGKILL")
})

/** Start the fixture in `mode` and wait for its "listening on <addr>" line. */
const start = (exe: string, args: ReadonlyArray<string>) =>
  Effect.callback<{ readonly pid: number; readonly addr: string }>((resume) => {
    const child = spawn(exe, args, { stdio: ["ignore", "pipe", "inherit"] })
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
    const res = await fetch(url)
    return (await res.text()).trim()
  })

const agentWith = (table?: Offsets.OffsetsTable) => ManagerM.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(NetHttpServer.NetHttpServer.layer, Grpc.Grpc.layer)),
  Layer.provideMerge(Layer.mergeAll(
    BpfLive.layer,
    ProbeTest.layerSink,
    ProbeTest.layerTargets,
    TracingConfig.layer(TracingConfig.defaultSampler),
    table === undefined ? GoBinary.layer : Layer.effect(TargetAnalysis, GoBinary.make({ table }))
  ))
)
const agent = agentWith()

/** The shipped table with grpc's v1.85.0 builds left out: the stripped fixture's release is then not covered. */
const without185: Offsets.OffsetsTable = (() => {
  const m = Offsets.shipped.modules["google.golang.org/grpc"]!
  return {
    ...Offsets.shipped,
    modules: {
      ...Offsets.shipped.modules,
      "google.golang.org/grpc": { ...m, builds: Object.fromEntries(Object.entries(m.builds).filter(([v]) =>
        !v.startsWith("v1.85.")
      )) }
    }
  }
})()

/**
 * Entries of `pid` (every entry when undefined) in the hash maps named `name` (the kernel keeps 15 characters): their
 * keys start with the tgid (little-endian u32). Fails when no such map exists, so the count cannot be vacuously 0.
 */
const entriesOf = (pid: number | undefined, name: string): number => {
  const maps = (JSON.parse(execFileSync("bpftool", ["-j", "map", "show"]).toString()) as Array<
    { readonly id: number; readonly name?: string }
  >).filter((m) => m.name === name.slice(0, 15))
  assert.isAbove(maps.length, 0, `no map ${name}`)
  const mine = [...new Uint8Array(new Uint32Array([pid ?? 0]).buffer)]
    .map((b) => `0x${b.toString(16).padStart(2, "0")}`)
  let n = 0
  for (const m of maps) {
    let out: string
    try {
      out = execFileSync("bpftool", ["-j", "map", "dump", "id", String(m.id)], { stdio: ["ignore", "pipe", "ignore"] })
        .toString()
    } catch {
      // Gone since `map show`: another suite's object, closed meanwhile (suites run concurrently). None of ours.
      continue
    }
    const dump = JSON.parse(out) as Array<{ readonly key: ReadonlyArray<string> }>
    n += dump.filter((e) => pid === undefined || e.key.slice(0, 4).join(" ") === mine.join(" ")).length
  }
  return n
}

const one = (spans: ReadonlyArray<SpanData>, pred: (s: SpanData) => boolean, what: string): SpanData => {
  const found = spans.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} spans`)
  return found[0]!
}

/** Server and client processes, both attached. */
const startPair = (exe: string) =>
  Effect.gen(function*() {
    const server = yield* start(exe, ["server", "127.0.0.1:0"])
    const client = yield* start(exe, ["client", server.addr, "127.0.0.1:0"])
    const analysis = yield* TargetAnalysis
    const manager = yield* Manager
    for (const p of [server, client]) {
      yield* manager.handle(TargetEvent.TargetEvent.Started({ target: yield* analysis.analyzePid(p.pid) }))
    }
    return { server, client, grpcPort: Number(server.addr.split(":")[1]) }
  })

describe.each(builds)("grpc probe on Go $go, grpc $grpc", ({ go, grpc }) => {
  const version = `${go} ${grpc}`
  it.live("unary OK, NotFound and a server stream: client under the HTTP span, server under the client", () =>
    Effect.gen(function*() {
      const { server, client, grpcPort } = yield* startPair(binaries.get(version)!)
      assert.deepStrictEqual((yield* (yield* Manager).targets).map((t) => [...t.probes].sort()), [
        ["go_context", "grpc", "nethttp_server"],
        ["go_context", "grpc", "nethttp_server"]
      ])
      const base = `http://${client.addr}`
      assert.strictEqual(yield* get(`${base}/call?m=ok`), "hello probe")
      assert.strictEqual(yield* get(`${base}/call?m=notfound`), "NotFound")
      assert.strictEqual(yield* get(`${base}/call?m=stream`), "sum 6")

      // Per call: the front's HTTP span, the gRPC client span, the gRPC server span.
      const spans = yield* (yield* CapturedSpans).take(9).pipe(Effect.timeout("15 seconds"))
      const cases = [
        { method: "Say", code: 0, client: { code: "unset" }, server: { code: "unset" } },
        { method: "Find", code: 5, client: { code: "error", message: "NOT_FOUND" }, server: { code: "unset" } },
        { method: "Count", code: 0, client: { code: "unset" }, server: { code: "unset" } }
      ] as const
      for (const c of cases) {
        const name = `probescope.test.Echo/${c.method}`
        const cs = one(spans, (s) => s.kind === "client" && s.name === name, `${name} client`)
        const ss = one(spans, (s) => s.kind === "server" && s.name === name, `${name} server`)
        const http = one(spans, (s) => s.spanId === cs.parentSpanId, `${name} client's parent`)
        assert.strictEqual(http.probe, "nethttp_server")
        assert.strictEqual(http.name, "GET /call")
        assert.strictEqual(http.pid, client.pid)

        assert.strictEqual(cs.probe, "grpc")
        assert.strictEqual(cs.pid, client.pid)
        assert.strictEqual(cs.traceId, http.traceId)
        assert.strictEqual(cs.parentIsRemote, false)
        assert.deepStrictEqual(cs.status, c.client)
        const peerPort = ss.attributes["network.peer.port"]
        assert.isNumber(peerPort)
        assert.deepStrictEqual(cs.attributes, {
          "rpc.system": "grpc",
          "rpc.service": "probescope.test.Echo",
          "rpc.method": c.method,
          "rpc.grpc.status_code": c.code,
          "server.address": "127.0.0.1",
          "server.port": grpcPort,
          "network.peer.address": "127.0.0.1",
          "network.peer.port": grpcPort
        })

        assert.strictEqual(ss.probe, "grpc")
        assert.strictEqual(ss.pid, server.pid)
        assert.strictEqual(ss.traceId, http.traceId)
        assert.strictEqual(ss.parentSpanId, cs.spanId)
        assert.strictEqual(ss.parentIsRemote, true)
        assert.deepStrictEqual(ss.status, c.server)
        assert.deepStrictEqual(ss.attributes, {
          "rpc.system": "grpc",
          "rpc.service": "probescope.test.Echo",
          "rpc.method": c.method,
          "rpc.grpc.status_code": c.code,
          "server.address": "127.0.0.1",
          "server.port": grpcPort,
          "network.peer.address": "127.0.0.1",
          "network.peer.port": peerPort
        })
        assert.isTrue(ss.startMonoNs >= cs.startMonoNs && ss.endMonoNs <= cs.endMonoNs, `${name}: nesting`)
      }

      // One measurement per span into each probe's duration histogram, with the metric's attributes only.
      const ms = (yield* (yield* CapturedMeasurements).all).filter((m) => m.instrument.name.startsWith("rpc."))
      assert.deepStrictEqual(
        ms.map((m) => [m.instrument.name, m.pid, m.attributes["rpc.method"], m.attributes["rpc.grpc.status_code"]])
          .sort((a, b) => String(a).localeCompare(String(b))),
        [
          ["rpc.client.call.duration", client.pid, "Count", 0],
          ["rpc.client.call.duration", client.pid, "Find", 5],
          ["rpc.client.call.duration", client.pid, "Say", 0],
          ["rpc.server.call.duration", server.pid, "Count", 0],
          ["rpc.server.call.duration", server.pid, "Find", 5],
          ["rpc.server.call.duration", server.pid, "Say", 0]
        ]
      )
      const clientSay = ms.find((m) => m.instrument.name === "rpc.client.call.duration" &&
        m.attributes["rpc.method"] === "Say")!
      assert.deepStrictEqual(clientSay.attributes, {
        "rpc.system": "grpc",
        "rpc.service": "probescope.test.Echo",
        "rpc.method": "Say",
        "rpc.grpc.status_code": 0,
        "server.address": "127.0.0.1",
        "server.port": grpcPort
      })
    }).pipe(Effect.provide(agent)), 60_000)

  it.live("UNIMPLEMENTED is an error on both sides; a bidi stream; no in-flight entry left behind", () =>
    Effect.gen(function*() {
      const { client, server } = yield* startPair(binaries.get(version)!)
      assert.strictEqual(yield* get(`http://${client.addr}/call?m=unimplemented`), "Unimplemented")
      assert.strictEqual(yield* get(`http://${client.addr}/call?m=chat`), "chatted 2")
      const spans = yield* (yield* CapturedSpans).take(6).pipe(Effect.timeout("15 seconds"))
      const grpc = spans.filter((s) => s.probe === "grpc")
      assert.deepStrictEqual(
        grpc.map((s) => [s.name, s.kind, s.pid, s.attributes["rpc.grpc.status_code"], s.status.code, s.status.message])
          .sort((a, b) => String(a).localeCompare(String(b))),
        [
          ["probescope.test.Echo/Chat", "client", client.pid, 0, "unset", undefined],
          ["probescope.test.Echo/Chat", "server", server.pid, 0, "unset", undefined],
          ["probescope.test.Echo/Nope", "client", client.pid, 12, "error", "UNIMPLEMENTED"],
          ["probescope.test.Echo/Nope", "server", server.pid, 12, "error", "UNIMPLEMENTED"]
        ]
      )
      for (const name of ["probescope.test.Echo/Chat", "probescope.test.Echo/Nope"]) {
        const c = one(grpc, (s) => s.name === name && s.kind === "client", `${name} client`)
        const sv = one(grpc, (s) => s.name === name && s.kind === "server", `${name} server`)
        assert.strictEqual(sv.parentSpanId, c.spanId)
      }
      // Every call ended: nothing of either process is left in the probe's per-call maps.
      for (const pid of [client.pid, server.pid]) {
        // ps_ctx_spans: the server spans' stream contexts were unregistered when they ended.
        for (
          const map of [
            "grpc_server_inflight",
            "grpc_client_starting",
            "grpc_client_streams",
            "grpc_pending_hf",
            "ps_ctx_spans"
          ]
        ) {
          assert.strictEqual(entriesOf(pid, map), 0, `${map} of ${pid}`)
        }
      }
    }).pipe(Effect.provide(agent)), 60_000)

  it.live("a traceparent sent as metadata is continued by the server (it wins over the connection map)", () =>
    Effect.gen(function*() {
      const { client, server } = yield* startPair(binaries.get(version)!)
      const tp = `00-${INCOMING_TRACE}-${INCOMING_SPAN}-01`
      assert.strictEqual(yield* get(`http://${client.addr}/call?m=ok&tp=${tp}`), "hello probe")
      const spans = yield* (yield* CapturedSpans).take(3).pipe(Effect.timeout("15 seconds"))
      const ss = one(spans, (s) => s.kind === "server" && s.probe === "grpc", "server")
      assert.strictEqual(ss.pid, server.pid)
      assert.strictEqual(ss.traceId, INCOMING_TRACE)
      assert.strictEqual(ss.parentSpanId, INCOMING_SPAN)
      assert.strictEqual(ss.parentIsRemote, true)
      // The stream's entry the client published was consumed all the same (keys carry no pid: the whole map).
      assert.strictEqual(entriesOf(undefined, "grpc_stream_spans"), 0)
    }).pipe(Effect.provide(agent)), 60_000)

  it.live("concurrent calls on one HTTP/2 connection: each server span under its own call (by stream id)", () =>
    Effect.gen(function*() {
      const { client, server } = yield* startPair(binaries.get(version)!)
      assert.strictEqual(yield* get(`http://${client.addr}/parallel?n=8`), "done 8")
      const spans = yield* (yield* CapturedSpans).take(17).pipe(Effect.timeout("15 seconds"))
      const http = one(spans, (s) => s.probe === "nethttp_server", "front")
      const clients = spans.filter((s) => s.probe === "grpc" && s.kind === "client")
      const servers = spans.filter((s) => s.probe === "grpc" && s.kind === "server")
      assert.strictEqual(clients.length, 8)
      assert.strictEqual(servers.length, 8)
      for (const c of clients) assert.strictEqual(c.parentSpanId, http.spanId)
      // Every call has exactly one server span under it, inside its time: no sibling took another's stream.
      for (const c of clients) {
        const under = servers.filter((s) => s.parentSpanId === c.spanId)
        assert.strictEqual(under.length, 1, `client ${c.spanId}: ${under.length} server spans`)
        const s = under[0]!
        assert.strictEqual(s.pid, server.pid)
        assert.strictEqual(s.traceId, http.traceId)
        assert.isTrue(s.startMonoNs >= c.startMonoNs && s.endMonoNs <= c.endMonoNs, `${s.spanId}: nesting`)
      }
    }).pipe(Effect.provide(agent)), 60_000)
})

describe("grpc on a stripped build (Go 1.26.8, grpc v1.85.0): offsets from the shipped table", () => {
  it.live("no symbols, no DWARF: instrumented, with the offsets the DWARF build has; spans as usual", () =>
    Effect.gen(function*() {
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      const offsets = (pid: number) =>
        Effect.map(analysis.analyzePid(pid), (t) => {
          const a = manager.inspect(t).find((i) => i.probe === "grpc")!.applicability
          assert.strictEqual(a._tag, "Applies", JSON.stringify(a))
          return { dwarf: t.binary.hasDwarf, offsets: a._tag === "Applies" ? a.offsets : {} }
        })
      const withDwarf = yield* start(binaries.get("1.26.8 v1.85.0")!, ["server", "127.0.0.1:0"])
      const { server, client, grpcPort } = yield* startPair(stripped)
      const fromTable = yield* offsets(server.pid)
      const fromDwarf = yield* offsets(withDwarf.pid)
      assert.deepStrictEqual([fromTable.dwarf, fromDwarf.dwarf], [false, true])
      assert.deepStrictEqual(fromTable.offsets, fromDwarf.offsets)
      assert.deepStrictEqual((yield* manager.targets).map((t) => [...t.probes].sort()), [
        ["go_context", "grpc", "nethttp_server"],
        ["go_context", "grpc", "nethttp_server"]
      ])
      const base = `http://${client.addr}`
      assert.strictEqual(yield* get(`${base}/call?m=ok`), "hello probe")
      assert.strictEqual(yield* get(`${base}/call?m=notfound`), "NotFound")
      const spans = yield* (yield* CapturedSpans).take(6).pipe(Effect.timeout("15 seconds"))
      // io.EOF's address is a data symbol only .symtab has: the client tells the clean end by its value (an
      // *errorString "EOF", errors.(*errorString).Error being a function the pclntab names).
      const cases = [
        { method: "Say", code: 0, client: { code: "unset" }, clientCode: 0 },
        { method: "Find", code: 5, client: { code: "error", message: "NOT_FOUND" }, clientCode: 5 }
      ] as const
      for (const c of cases) {
        const name = `probescope.test.Echo/${c.method}`
        const cs = one(spans, (s) => s.kind === "client" && s.name === name, `${name} client`)
        const ss = one(spans, (s) => s.kind === "server" && s.name === name, `${name} server`)
        const http = one(spans, (s) => s.spanId === cs.parentSpanId, `${name} client's parent`)
        assert.deepStrictEqual([http.probe, http.name, http.pid, cs.pid, ss.pid], ["nethttp_server", "GET /call",
          client.pid, client.pid, server.pid])
        assert.deepStrictEqual([cs.traceId, ss.traceId, ss.parentSpanId], [http.traceId, http.traceId, cs.spanId])
        const rpc = { "rpc.system": "grpc", "rpc.service": "probescope.test.Echo", "rpc.method": c.method }
        const to = { "server.address": "127.0.0.1", "server.port": grpcPort, "network.peer.address": "127.0.0.1" }
        assert.deepStrictEqual([cs.attributes, cs.status], [
          { ...rpc, "rpc.grpc.status_code": c.clientCode, ...to, "network.peer.port": grpcPort },
          c.client
        ])
        assert.deepStrictEqual([ss.attributes, ss.status], [
          { ...rpc, "rpc.grpc.status_code": c.code, ...to, "network.peer.port": ss.attributes["network.peer.port"] },
          { code: "unset" }
        ])
        assert.isNumber(ss.attributes["network.peer.port"])
      }
    }).pipe(Effect.provide(agent)), 60_000)

  it.live("a grpc release the table does not cover is still refused, with the reason", () =>
    Effect.gen(function*() {
      const app = yield* start(stripped, ["server", "127.0.0.1:0"])
      const target = yield* (yield* TargetAnalysis).analyzePid(app.pid)
      const T = "google.golang.org/grpc/internal/transport.ServerStream"
      const why = target.binary.fieldOffset(T, "Stream")
      assert.strictEqual(Result.isFailure(why) ? why.failure._tag : "", "ModuleVersionNotCovered")
      assert.match(Result.isFailure(why) ? why.failure.message : "",
        /^google\.golang\.org\/grpc v1\.85\.0 is not covered by the offsets table \(covered: .*1\.84\)$/)
      assert.deepStrictEqual((yield* Manager).inspect(target).find((i) => i.probe === "grpc")!.applicability, {
        _tag: "NotApplicable",
        probe: "grpc",
        // ServerStream.Stream is optional (older releases have no ServerStream): the first required field says it.
        reason: "no offset for google.golang.org/grpc/internal/transport.Stream.method (Go 1.26.8, google.golang.org/grpc " +
          "v1.85.0)"
      })
    }).pipe(Effect.provide(agentWith(without185))), 60_000)
})
