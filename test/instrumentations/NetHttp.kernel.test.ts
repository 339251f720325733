/**
 * The net/http probes on the real kernel (root), per supported Go release: build examples/go-service with that
 * toolchain, run frontend and backend, attach go_context + server + client through the Manager, drive requests over
 * loopback with fetch, and check the spans: routes, statuses, remote and local parents, fan-out across goroutines.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as Http from "../../src/instrumentations/internal/Http.ts"
import * as NetHttpClient from "../../src/instrumentations/NetHttpClient.ts"
import * as NetHttpServer from "../../src/instrumentations/NetHttpServer.ts"
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

const root = path.resolve(import.meta.dirname, "../..")
const versions = ["1.25.9", "1.26.8", "1.27.3"]
const INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
const FANOUT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

let dir = ""
const procs: Array<ChildProcess> = []

beforeAll(() => {
  execFileSync("make", ["-C", path.join(root, "bpf")], { stdio: "ignore" })
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-nethttp-"))
  for (const v of versions) {
    execFileSync("go", ["build", "-o", path.join(dir, v) + "/", "./..."], {
      cwd: path.join(root, "examples/go-service"),
      env: { ...process.env, GOTOOLCHAIN: `go${v}`, GOFLAGS: "-mod=mod" },
      stdio: "ignore"
    })
  }
  // Older than the supported range: must be left alone.
  execFileSync("go", ["build", "-o", path.join(dir, "old") + "/", "./backend"], {
    cwd: path.join(root, "examples/go-service"),
    env: { ...process.env, GOTOOLCHAIN: "go1.24.13" },
    stdio: "ignore"
  })
  // Stripped (no DWARF, no .symtab): offsets come from the shipped table, functions from .gopclntab.
  execFileSync("go", ["build", "-ldflags=-s -w", "-o", path.join(dir, "stripped") + "/", "./..."], {
    cwd: path.join(root, "examples/go-service"),
    stdio: "ignore"
  })
}, 600_000)

afterAll(() => {
  for (const p of procs) p.kill("SIGKILL")
  if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
})

/** Start a program of the example and wait for the "listening on <addr>" line. */
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

// The probes are merged into the test's context too, so a test can reach a loaded probe by its tag.
const agentWith = (sampler: TracingConfig.Sampler) => ManagerM.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(NetHttpServer.NetHttpServer.layer, NetHttpClient.NetHttpClient.layer)),
  Layer.provideMerge(Layer.mergeAll(
    BpfLive.layer,
    ProbeTest.layerSink,
    ProbeTest.layerTargets,
    TracingConfig.layer(sampler),
    GoBinary.layer
  ))
)

const agent = agentWith(TracingConfig.defaultSampler)

const get = (url: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const res = await fetch(url, { headers })
    await res.text()
    return res.status
  })

/**
 * A frontend server span's subtree across both processes: its client spans (local children) and, through the
 * connection map, one backend server span under each of them (remote parent, same trace). Client and server also
 * agree on the connection's client port.
 */
const assertTree = (spans: ReadonlyArray<SpanData>, root: SpanData, backendPid: number, calls: number) => {
  const clients = spans.filter((s) => s.kind === "client" && s.parentSpanId === root.spanId)
  assert.strictEqual(clients.length, calls, `${root.name}: client spans`)
  for (const c of clients) {
    assert.strictEqual(c.traceId, root.traceId)
    assert.strictEqual(c.parentIsRemote, false)
    const served = spans.filter((s) => s.pid === backendPid && s.parentSpanId === c.spanId)
    assert.strictEqual(served.length, 1, `${root.name}: backend span under client ${c.spanId}`)
    const b = served[0]!
    assert.strictEqual(b.kind, "server")
    assert.strictEqual(b.traceId, root.traceId)
    assert.strictEqual(b.parentIsRemote, true)
    assert.strictEqual(b.traceFlags & 1, 1)
    assert.isNumber(c.attributes["network.local.port"])
    assert.strictEqual(b.attributes["network.peer.port"], c.attributes["network.local.port"])
    assert.isTrue(b.startMonoNs >= c.startMonoNs && b.endMonoNs <= c.endMonoNs)
  }
}

const one = (spans: ReadonlyArray<SpanData>, pred: (s: SpanData) => boolean, what: string): SpanData => {
  const found = spans.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} spans`)
  return found[0]!
}

describe.each(versions)("net/http probes on Go %s", (version) => {
  it.live("server and client spans, parents across goroutines, statuses", () =>
    Effect.gen(function*() {
      const backend = yield* start(path.join(dir, version, "backend"), ["-addr", "127.0.0.1:0"])
      const frontend = yield* start(path.join(dir, version, "frontend"), [
        "-addr",
        "127.0.0.1:0",
        "-backend",
        `http://${backend.addr}`
      ])
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      for (const pid of [backend.pid, frontend.pid]) {
        const target = yield* analysis.analyzePid(pid)
        yield* manager.handle(TargetEvent.TargetEvent.Started({ target }))
      }
      const attached = (yield* manager.targets).map((t) => [...t.probes].sort())
      // backend makes no HTTP calls, so its binary has no Transport.roundTrip: no client probe there.
      assert.deepStrictEqual(attached, [
        ["go_context", "nethttp_server"],
        ["go_context", "nethttp_client", "nethttp_server"]
      ])

      const base = `http://${frontend.addr}`
      assert.strictEqual(yield* get(`${base}/hello`, { traceparent: INCOMING }), 200)
      // More than 8 headers: http.Header is no longer a single swiss group but a directory of tables.
      const many = Object.fromEntries(Array.from({ length: 24 }, (_, i) => [`x-filler-${i}`, `v${i}`]))
      assert.strictEqual(yield* get(`${base}/echo?big=1`, { ...many, traceparent: INCOMING.replace("b7ad", "c7ad") }), 200)
      assert.strictEqual(yield* get(`${base}/users/7`), 200)
      assert.strictEqual(yield* get(`${base}/fanout`), 200)
      assert.strictEqual(yield* get(`${base}/boom`), 500)
      assert.strictEqual(yield* get(`${base}/nope`), 404)
      assert.strictEqual(yield* get(`${base}/unreachable`), 502)
      assert.strictEqual(yield* get(`${base}/fanout`, { traceparent: `00-${FANOUT_TRACE}-00f067aa0ba902b7-01` }), 200)
      // 1 + 3 (echo) + 3 + 7 + 1 + 1 + 2 + 7 spans (see the routes in examples/go-service/frontend).
      const spans = yield* (yield* CapturedSpans).take(25).pipe(Effect.timeout("15 seconds"))
      const fe = (s: SpanData) => s.pid === frontend.pid
      const server = (s: SpanData) => s.kind === "server"

      const hello = one(spans, (s) => fe(s) && s.name === "GET /hello", "hello")
      assert.strictEqual(hello.traceId, "0af7651916cd43dd8448eb211c80319c")
      assert.strictEqual(hello.parentSpanId, "b7ad6b7169203331")
      assert.strictEqual(hello.parentIsRemote, true)
      assert.strictEqual(hello.attributes["http.route"], "/hello")
      assert.strictEqual(hello.attributes["server.port"], Number(frontend.addr.split(":")[1]))
      assert.strictEqual(hello.attributes["network.protocol.version"], "1.1")
      assert.isTrue(hello.endMonoNs > hello.startMonoNs)

      const echo = one(spans, (s) => fe(s) && s.name === "GET /echo", "echo with many headers")
      assert.strictEqual(echo.traceId, "0af7651916cd43dd8448eb211c80319c")
      assert.strictEqual(echo.parentSpanId, "c7ad6b7169203331")

      const users = one(spans, (s) => fe(s) && server(s) && s.name === "GET /users/{id}", "frontend users")
      assert.strictEqual(users.attributes["http.response.status_code"], 200)
      assert.strictEqual(users.parentSpanId, undefined)
      const call = one(spans, (s) => s.kind === "client" && s.parentSpanId === users.spanId, "client under users")
      assert.strictEqual(call.traceId, users.traceId)
      assert.strictEqual(call.attributes["url.full"], `http://${backend.addr}/users/7`)
      assert.strictEqual(call.attributes["http.response.status_code"], 200)
      assert.isTrue(call.startMonoNs >= users.startMonoNs && call.endMonoNs <= users.endMonoNs)
      // The backend continues the trace (header when the kernel allows writing it, else the connection map).
      const backendUsers = one(spans, (s) => s.pid === backend.pid && s.attributes["url.path"] === "/users/7", "be")
      assert.strictEqual(backendUsers.traceId, users.traceId)
      assert.strictEqual(backendUsers.parentSpanId, call.spanId)
      assert.strictEqual(backendUsers.parentIsRemote, true)
      assertTree(spans, users, backend.pid, 1)
      assertTree(spans, echo, backend.pid, 1)

      // Client calls made from goroutines the handler started are parented by go_context's newproc1 copy, and each
      // backend span under its own client span (three connections at once).
      const fanouts = spans.filter((s) => fe(s) && s.name === "GET /fanout")
      assert.strictEqual(fanouts.length, 2)
      const fanout = one(fanouts, (s) => s.parentSpanId === undefined, "fanout")
      assertTree(spans, fanout, backend.pid, 3)
      // With an incoming traceparent the whole tree, both processes, carries its trace id.
      const traced = one(fanouts, (s) => s.parentSpanId === "00f067aa0ba902b7", "fanout with traceparent")
      assert.strictEqual(traced.traceId, FANOUT_TRACE)
      assertTree(spans, traced, backend.pid, 3)
      assert.strictEqual(spans.filter((s) => s.traceId === FANOUT_TRACE).length, 7)

      const boom = one(spans, (s) => fe(s) && s.name === "GET /boom", "boom")
      assert.deepStrictEqual(boom.status, { code: "error", message: "HTTP 500" })
      const nope = one(spans, (s) => fe(s) && s.attributes["url.path"] === "/nope", "nope")
      assert.strictEqual(nope.name, "GET")
      assert.strictEqual(nope.attributes["http.response.status_code"], 404)
      assert.deepStrictEqual(nope.status, { code: "unset" })

      const unreachable = one(spans, (s) => s.kind === "client" && s.attributes["server.port"] === 1, "unreachable")
      assert.deepStrictEqual(unreachable.status, { code: "error", message: "transport error" })
      assert.strictEqual(unreachable.attributes["error.type"], "_OTHER")

      const stats = yield* manager.stats
      for (const s of stats) assert.strictEqual(s.decodeErrors, 0, `${s.probe} decode errors`)
    }).pipe(Effect.provide(agent)))
})

describe("net/http probes: sampling in BPF, stripped binary", () => {
  it.live("parentbased_always_off records only requests whose remote parent is sampled", () =>
    Effect.gen(function*() {
      const frontend = yield* start(path.join(dir, "stripped", "frontend"), ["-addr", "127.0.0.1:0"])
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      yield* manager.handle(TargetEvent.TargetEvent.Started({ target: yield* analysis.analyzePid(frontend.pid) }))
      assert.deepStrictEqual((yield* manager.targets).map((t) => [...t.probes].sort()), [
        ["go_context", "nethttp_client", "nethttp_server"]
      ])
      const base = `http://${frontend.addr}`
      yield* get(`${base}/hello`, { traceparent: INCOMING.replace(/-01$/, "-00") })
      yield* get(`${base}/boom`)
      yield* get(`${base}/hello`, { traceparent: INCOMING })
      const [span] = yield* (yield* CapturedSpans).take(1).pipe(Effect.timeout("10 seconds"))
      assert.strictEqual(span!.traceId, "0af7651916cd43dd8448eb211c80319c")
      assert.strictEqual(span!.traceFlags & 1, 1)
      assert.strictEqual(span!.attributes["http.route"], "/hello")
      yield* Effect.sleep("500 millis")
      const server = (yield* manager.stats).find((s) => s.probe === "nethttp_server")!
      assert.strictEqual(server.kernelSubmitted, 1n)
      assert.strictEqual(server.records, 1)
    }).pipe(Effect.provide(agentWith({ root: "always_off", ratio: 1, parentBased: true }))))
})

describe("net/http probes: same-host propagation without header writes", () => {
  const pair = (exeDir: string, backendAddr: string, backendUrl: (addr: string) => string) =>
    Effect.gen(function*() {
      const backend = yield* start(path.join(exeDir, "backend"), ["-addr", backendAddr])
      const frontend = yield* start(path.join(exeDir, "frontend"), [
        "-addr",
        "127.0.0.1:0",
        "-backend",
        backendUrl(backend.addr)
      ])
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      for (const pid of [backend.pid, frontend.pid]) {
        yield* manager.handle(TargetEvent.TargetEvent.Started({ target: yield* analysis.analyzePid(pid) }))
      }
      const base = `http://${frontend.addr}`
      assert.strictEqual(yield* get(`${base}/fanout`), 200)
      assert.strictEqual(yield* get(`${base}/fanout`, { traceparent: `00-${FANOUT_TRACE}-00f067aa0ba902b7-01` }), 200)
      const spans = yield* (yield* CapturedSpans).take(14).pipe(Effect.timeout("15 seconds"))
      const roots = spans.filter((s) => s.pid === frontend.pid && s.kind === "server")
      assert.strictEqual(roots.length, 2)
      for (const r of roots) assertTree(spans, r, backend.pid, 3)
      assert.strictEqual(spans.filter((s) => s.traceId === FANOUT_TRACE).length, 7)
      return { backend, frontend, spans }
    })

  it.live("stripped binaries (offsets from the shipped table), backend on IPv6 loopback", () =>
    pair(path.join(dir, "stripped"), "[::1]:0", (addr) => `http://${addr}`).pipe(
      Effect.tap(({ spans }) =>
        Effect.sync(() => {
          const be = spans.filter((s) => s.kind === "server" && s.attributes["network.peer.address"] === "::1")
          assert.strictEqual(be.length, 6)
        })
      ),
      Effect.provide(agent)
    ))

  it.live("IPv4 client to a dual-stack server (the server sees a v4-mapped address)", () =>
    pair(path.join(dir, "1.26.8"), "[::]:0", (addr) => `http://127.0.0.1:${addr.split(":").at(-1)}`).pipe(
      Effect.provide(agent)
    ))
})

describe("net/http probes: the server side of the connection map", () => {
  /** One HTTP/1.1 exchange on a raw socket whose connection was published in ps_conn_spans from user space. */
  const publishedRequest = (host: string, port: number, headers: string) =>
    Effect.gen(function*() {
      const server = yield* NetHttpServer.NetHttpServer.tag
      const socket = yield* Effect.callback<net.Socket>((resume) => {
        const sock = net.connect({ host, port }, () => resume(Effect.succeed(sock)))
        sock.on("error", (e) => resume(Effect.die(e)))
      })
      const key = Http.connKey(
        `[${socket.localAddress}]:${socket.localPort}`,
        `[${socket.remoteAddress}]:${socket.remotePort}`
      )!
      const value = Http.SpanCtx.encode({ traceId: FANOUT_TRACE, spanId: "5e5e5e5e5e5e5e5e", flags: 1 })
      yield* (yield* server.loader.load).object.update("ps_conn_spans", key, value)
      const reply = yield* Effect.callback<string>((resume) => {
        let got = ""
        socket.on("data", (b: Buffer) => {
          got += b.toString()
          if (got.includes("\r\n\r\n")) resume(Effect.succeed(got))
        })
        socket.write(`GET /users/3 HTTP/1.1\r\nHost: ${host}\r\n${headers}\r\n`)
      })
      socket.destroy()
      yield* (yield* server.loader.load).object.delete("ps_conn_spans", key)
      return reply
    })

  it.live("a published connection gives the server span its parent; a traceparent header wins over it", () =>
    Effect.gen(function*() {
      const v4 = yield* start(path.join(dir, "1.26.8", "backend"), ["-addr", "127.0.0.1:0"])
      const v6 = yield* start(path.join(dir, "1.26.8", "backend"), ["-addr", "[::1]:0"])
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      for (const pid of [v4.pid, v6.pid]) {
        yield* manager.handle(TargetEvent.TargetEvent.Started({ target: yield* analysis.analyzePid(pid) }))
      }
      const port = (addr: string) => Number(addr.split(":").at(-1))
      assert.match(yield* publishedRequest("127.0.0.1", port(v4.addr), ""), /^HTTP\/1.1 200/)
      assert.match(yield* publishedRequest("::1", port(v6.addr), ""), /^HTTP\/1.1 200/)
      assert.match(yield* publishedRequest("127.0.0.1", port(v4.addr), `traceparent: ${INCOMING}\r\n`), /^HTTP/)
      const spans = yield* (yield* CapturedSpans).take(3).pipe(Effect.timeout("10 seconds"))
      for (const pid of [v4.pid, v6.pid]) {
        const s = one(spans, (s) => s.pid === pid && s.traceId === FANOUT_TRACE, `linked span of ${pid}`)
        assert.strictEqual(s.parentSpanId, "5e5e5e5e5e5e5e5e")
        assert.strictEqual(s.parentIsRemote, true)
      }
      const header = one(spans, (s) => s.traceId === "0af7651916cd43dd8448eb211c80319c", "header wins")
      assert.strictEqual(header.parentSpanId, "b7ad6b7169203331")
    }).pipe(Effect.provide(agent)))
})

describe("net/http probes: unsupported Go", () => {
  it.live("a Go 1.24 program gets no probe, with the reason", () =>
    Effect.gen(function*() {
      const old = yield* start(path.join(dir, "old", "backend"), ["-addr", "127.0.0.1:0"])
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      const target = yield* analysis.analyzePid(old.pid)
      assert.strictEqual(target.goVersion, "1.24.13")
      const reasons = manager.inspect(target).map((i) =>
        `${i.probe}: ${i.applicability._tag === "NotApplicable" ? i.applicability.reason : i.applicability._tag}`
      )
      assert.deepStrictEqual(reasons.sort(), [
        "go_context: Go 1.24.13 is outside the supported range >=1.25 <1.28",
        "nethttp_client: Go 1.24.13 is outside the supported range >=1.25 <1.28",
        "nethttp_server: Go 1.24.13 is outside the supported range >=1.25 <1.28"
      ])
      yield* manager.handle(TargetEvent.TargetEvent.Started({ target }))
      assert.deepStrictEqual(yield* manager.targets, [])
      assert.strictEqual(yield* get(`http://${old.addr}/users/1`), 200)
    }).pipe(Effect.provide(agent)))
})
