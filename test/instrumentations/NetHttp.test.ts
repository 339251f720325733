import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import * as GoContext from "../../src/instrumentations/GoContext.ts"
import * as Http from "../../src/instrumentations/internal/Http.ts"
import * as Lockdown from "../../src/instrumentations/internal/Lockdown.ts"
import * as NetHttpClient from "../../src/instrumentations/NetHttpClient.ts"
import * as NetHttpServer from "../../src/instrumentations/NetHttpServer.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Manifest from "../../src/probe/Manifest.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedMeasurements, CapturedSpans } from "../../src/probe/ProbeTest.ts"
import { clientRecord, functions, go126Fields, goTarget, serverRecord } from "./fixtures.ts"
import * as Ids from "../../src/probe/Ids.ts"

const forbidden: Lockdown.WriteUserSupport = { permitted: false, reason: "kernel lockdown is integrity" }
const Client = NetHttpClient.make({ support: forbidden })
const ClientInjecting = NetHttpClient.make({ support: { permitted: true, reason: "kernel lockdown is none" } })

const run = <A, E>(self: Effect.Effect<A, E, any>, probes: Layer.Layer<any, any, any>) =>
  self.pipe(Effect.provide(probes.pipe(Layer.provideMerge(ProbeTest.layer))), Effect.scoped) as Effect.Effect<A, E>

/** The real objects' BTF (read from bpf/out without loading: no root), as the fake kernel then answers it. */
const realBtf = (object: string) =>
  BpfLive.readBtf(Probe.objectFile(object)).pipe(Effect.map(Option.getOrThrow), Effect.orDie)

const withRealBtf = Effect.gen(function*() {
  const kernel = yield* FakeKernel
  for (const object of ["go_context", "nethttp_server", "nethttp_client"]) {
    yield* kernel.defineBtf(object, yield* realBtf(object))
  }
})

describe("record layouts", () => {
  it.effect("match the C structs of the built objects' BTF, field by field", () =>
    Effect.gen(function*() {
      const server = yield* realBtf("nethttp_server")
      const client = yield* realBtf("nethttp_client")
      const context = yield* realBtf("go_context")
      const layouts = [
        [NetHttpServer.Record, server],
        [NetHttpServer.Offsets, server],
        [NetHttpClient.Record, client],
        [NetHttpClient.Offsets, client],
        [Http.ConnKey, context],
        [Http.SpanCtx, context],
        [GoContext.CtxKey, context]
      ] as const
      for (const [layout, btf] of layouts) {
        const struct = btf.structs[layout.struct!]!
        assert.deepStrictEqual(Binary.check(layout, struct), [], layout.struct)
        assert.strictEqual(layout.size, struct.size)
      }
      // The per-target layouts are the per-pid map's value types.
      assert.strictEqual(server.mapValues["ps_targets"], NetHttpServer.Offsets.struct)
      assert.strictEqual(client.mapValues["ps_targets"], NetHttpClient.Offsets.struct)
      // ps_ctx_spans: context value -> span context, in every object that declares it (go_context.h).
      for (const btf of [context, server, client]) {
        assert.strictEqual(btf.mapValues["ps_ctx_spans"], Http.SpanCtx.struct)
      }
    }))

  it.effect("are checked when the probes load: every layout against the object's BTF", () =>
    run(
      Effect.gen(function*() {
        const server = yield* NetHttpServer.NetHttpServer.tag
        const client = yield* Client.tag
        assert.deepStrictEqual((yield* server.loader.load).layouts, [
          { role: "record", struct: "nethttp_server_record", checked: true },
          { role: "perTarget", struct: "nethttp_server_offsets", checked: true }
        ])
        assert.deepStrictEqual((yield* client.loader.load).layouts, [
          { role: "record", struct: "nethttp_client_record", checked: true },
          { role: "perTarget", struct: "nethttp_client_offsets", checked: true }
        ])
      }),
      Layer.mergeAll(NetHttpServer.NetHttpServer.layer, Client.layer).pipe(
        Layer.provide(Layer.effectDiscard(withRealBtf))
      )
    ))

  it.effect("a C struct that moved a field fails the load naming the struct and the field", () =>
    Effect.gen(function*() {
      const btf = yield* realBtf("nethttp_server")
      const struct = btf.structs["nethttp_server_record"]!
      // As if `linked` had moved one byte (a field inserted before it in C, the TS layout left as it was).
      const moved = {
        ...btf,
        structs: {
          ...btf.structs,
          nethttp_server_record: {
            ...struct,
            members: struct.members.map((m) => m.name === "linked" ? { ...m, bitOffset: m.bitOffset + 8 } : m)
          }
        }
      }
      const kernel = yield* FakeKernel
      yield* kernel.defineBtf("go_context", yield* realBtf("go_context"))
      yield* kernel.defineBtf("nethttp_server", moved)
      const error = yield* Effect.flip(Effect.scoped(Layer.build(NetHttpServer.NetHttpServer.layer)))
      assert.strictEqual(error._tag, "ProbeLoadError")
      assert.strictEqual(
        error.message,
        "probe nethttp_server: record layout does not match struct nethttp_server_record in the BTF of " +
          "nethttp_server.bpf.o: field \"linked\": offset 67, BTF says 68"
      )
      assert.strictEqual(error._tag === "ProbeLoadError" ? error.reason : "", "LayoutMismatch")
      const cause = error._tag === "ProbeLoadError" ? error.cause : undefined
      assert.deepStrictEqual(
        cause === undefined ? undefined : { role: cause.role, struct: cause.struct, field: cause.field },
        { role: "record", struct: "nethttp_server_record", field: "linked" }
      )
    }).pipe(Effect.provide(ProbeTest.layer)))
})

describe("NetHttpServer", () => {
  it.effect("loads reusing go_context's go_spans with the sampler constants", () =>
    run(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const loads = (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [e] : [])
        assert.deepStrictEqual(loads.map((l) => l.object), ["go_context", "nethttp_server"])
        assert.deepStrictEqual(loads[1]!.reusedMaps, {
          go_spans: "go_context/go_spans",
          ps_conn_spans: "go_context/ps_conn_spans",
          ps_ctx_spans: "go_context/ps_ctx_spans"
        })
        assert.deepStrictEqual(loads[1]!.constants, {
          ps_sampler_kind: 0,
          ps_sampler_parent_based: true,
          ps_sampler_threshold: 0n
        })
        assert.deepStrictEqual(loads[0]!.constants, {})
      }),
      NetHttpServer.NetHttpServer.layer
    ))

  it.effect("writes the target's offsets to ps_targets, with swiss-map fallbacks", () =>
    run(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const server = yield* NetHttpServer.NetHttpServer.tag
        const scope = yield* Scope.make()
        const attachment = yield* server.attacher.attach(goTarget(77)).pipe(Scope.provide(scope))
        assert.deepStrictEqual(attachment.symbols, ["net/http.serverHandler.ServeHTTP"])
        const value = (yield* kernel.map("nethttp_server", "ps_targets")).get("4d000000")!
        assert.deepStrictEqual(NetHttpServer.Offsets.decode(value), {
          mapDirPtr: 16,
          mapDirLen: 24,
          tableGroupsData: 16,
          tableGroupsMask: 24,
          requestMethod: 0,
          requestUrl: 16,
          requestProtoMajor: 40,
          requestProtoMinor: 48,
          requestHeader: 56,
          requestHost: 128,
          requestRemoteAddr: 176,
          requestTls: 208,
          requestPattern: 232,
          urlScheme: 0,
          urlPath: 56,
          responseStatus: 120,
          responseConn: 0,
          connRwc: 16,
          // Not among the fake target's fields: 0, nothing registered.
          requestCtx: 0,
          tcpEnabled: 1,
          tcpConnFd: 0,
          tcpNetFdFamily: 56,
          tcpNetFdSotypeW: 1,
          tcpNetFdLaddrW: 5,
          tcpNetFdRaddrW: 7,
          tcpAddrIp: 0,
          tcpAddrPortW: 3
        })
        const programs = (yield* kernel.liveLinks).map((l) => `${l.program}@${l.offsets?.map((o) => o.toString(16))}`)
        assert.deepStrictEqual(programs, ["uprobe_ServeHTTP@280e0a", "uprobe_ServeHTTP_ret@280e93"])
        yield* Scope.close(scope, Exit.void)
      }),
      NetHttpServer.NetHttpServer.layer
    ))

  it.effect("turns records into SERVER spans per the HTTP semantic conventions", () =>
    run(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const captured = yield* CapturedSpans
        const server = yield* NetHttpServer.NetHttpServer.tag
        yield* kernel.push("nethttp_server", [
          serverRecord({ parent: 2, parentSpanId: Ids.fromHex("00f067aa0ba902b7") }),
          serverRecord({ status: 500, pattern: "/boom", path: "/boom", tls: true, protoMajor: 2, protoMinor: 0 }),
          serverRecord({ method: "PURGE", pattern: "", path: "/nope", status: 404, remote: "[::1]:40000" })
        ])
        yield* Effect.forkChild(server.runner.run)
        const [routed, failed, other] = yield* captured.take(3)
        assert.deepStrictEqual(routed, {
          pid: 4242,
          probe: "nethttp_server",
          traceId: "0af7651916cd43dd8448eb211c80319c",
          spanId: "b7ad6b7169203331",
          parentSpanId: "00f067aa0ba902b7",
          parentIsRemote: true,
          traceFlags: 1,
          name: "GET /users/{id}",
          kind: "server",
          startMonoNs: 1_000_000n,
          endMonoNs: 1_250_000n,
          attributes: {
            "http.request.method": "GET",
            "url.path": "/users/7",
            "url.scheme": "http",
            "http.route": "/users/{id}",
            "http.response.status_code": 200,
            "server.address": "127.0.0.1",
            "server.port": 8080,
            "network.peer.address": "127.0.0.1",
            "network.peer.port": 51234,
            "network.protocol.version": "1.1"
          },
          status: { code: "unset" }
        })
        assert.strictEqual(failed!.name, "GET /boom")
        assert.strictEqual(failed!.parentSpanId, undefined)
        assert.deepStrictEqual(failed!.status, { code: "error", message: "HTTP 500" })
        assert.strictEqual(failed!.attributes["error.type"], "500")
        assert.strictEqual(failed!.attributes["url.scheme"], "https")
        assert.strictEqual(failed!.attributes["network.protocol.version"], "2")
        assert.strictEqual(other!.name, "HTTP")
        assert.strictEqual(other!.attributes["http.request.method"], "_OTHER")
        assert.strictEqual(other!.attributes["http.request.method_original"], "PURGE")
        assert.strictEqual(other!.attributes["http.route"], undefined)
        assert.strictEqual(other!.attributes["network.peer.address"], "::1")
        assert.deepStrictEqual(other!.status, { code: "unset" })
        // Each span's duration also goes into the probe's own http.server.request.duration, with only the
        // metric's low-cardinality attributes (no path, no peer) and under the span's process.
        const measured = yield* (yield* CapturedMeasurements).take(3)
        assert.deepStrictEqual(measured.map((m) => [m.instrument, m.value, m.pid, m.attributes]), [
          [Http.serverDuration, 0.00025, 4242, {
            "http.request.method": "GET",
            "url.scheme": "http",
            "http.route": "/users/{id}",
            "http.response.status_code": 200,
            "network.protocol.version": "1.1"
          }],
          [Http.serverDuration, 0.00025, 4242, {
            "http.request.method": "GET",
            "url.scheme": "https",
            "http.route": "/boom",
            "http.response.status_code": 500,
            "network.protocol.version": "2",
            "error.type": "500"
          }],
          [Http.serverDuration, 0.00025, 4242, {
            "http.request.method": "_OTHER",
            "url.scheme": "http",
            "http.response.status_code": 404,
            "network.protocol.version": "1.1"
          }]
        ])
        assert.deepStrictEqual(NetHttpServer.NetHttpServer.instruments, { duration: Http.serverDuration })
      }),
      NetHttpServer.NetHttpServer.layer
    ))

  it.effect("rejects a short record and counts it as a decode error", () =>
    run(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const captured = yield* CapturedSpans
        const server = yield* NetHttpServer.NetHttpServer.tag
        yield* kernel.push("nethttp_server", [serverRecord().slice(0, 100), serverRecord()])
        yield* Effect.forkChild(server.runner.run)
        yield* captured.take(1)
        const stats = yield* server.runner.stats
        assert.strictEqual(stats.decodeErrors, 1)
        assert.strictEqual(stats.records, 1)
      }),
      NetHttpServer.NetHttpServer.layer
    ))

  it.effect("without the TCP address offsets (e.g. an old table): still applies, connection linking off", () =>
    run(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const server = yield* NetHttpServer.NetHttpServer.tag
        const { ["net.netFD.raddr"]: _gone, ...fields } = go126Fields
        const target = ProbeTest.target({ pid: 78, goVersion: "1.26.8", functions, fields })
        yield* server.attacher.attach(target)
        const value = NetHttpServer.Offsets.decode((yield* kernel.map("nethttp_server", "ps_targets")).get("4e000000")!)
        assert.strictEqual(value.tcpEnabled, 0)
        assert.strictEqual(value.requestMethod, 0)
        assert.strictEqual(value.responseStatus, 120)
      }),
      NetHttpServer.NetHttpServer.layer
    ))

  it.effect("a parent found through the connection map is a remote parent", () =>
    run(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const captured = yield* CapturedSpans
        const server = yield* NetHttpServer.NetHttpServer.tag
        const record = serverRecord({ parent: 2, parentSpanId: Ids.fromHex("1111111111111111"), linked: true })
        yield* kernel.push("nethttp_server", [record])
        yield* Effect.forkChild(server.runner.run)
        const [span] = yield* captured.take(1)
        assert.strictEqual(span!.parentSpanId, "1111111111111111")
        assert.strictEqual(span!.parentIsRemote, true)
        assert.strictEqual(span!.traceId, "0af7651916cd43dd8448eb211c80319c")
      }),
      NetHttpServer.NetHttpServer.layer
    ))

  it("does not apply outside the supported Go versions", () => {
    const check = (v: string) =>
      [NetHttpServer.manifest, NetHttpClient.manifest, GoContext.manifest].map((m) =>
        Manifest.check("p", m, goTarget(1, v))._tag
      )
    const old = Manifest.check("nethttp_server", NetHttpServer.manifest, goTarget(1, "1.24.9"))
    assert.deepStrictEqual(old, {
      _tag: "NotApplicable",
      probe: "nethttp_server",
      reason: "Go 1.24.9 is outside the supported range >=1.25 <1.28"
    })
    assert.deepStrictEqual(check("1.28.0"), ["NotApplicable", "NotApplicable", "NotApplicable"])
    assert.deepStrictEqual(check("1.25.0"), ["Applies", "Applies", "Applies"])
    assert.deepStrictEqual(check("1.27.3"), ["Applies", "Applies", "Applies"])
  })
})

describe("NetHttpClient", () => {
  it.effect("without bpf_probe_write_user: loads without the header writer and does not attach it", () =>
    run(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const client = yield* Client.tag
        const load = (yield* kernel.events).find((e) => e._tag === "Load" && e.object === "nethttp_client")
        assert.deepStrictEqual(load?._tag === "Load" ? load.disablePrograms : [], [NetHttpClient.INJECT_PROGRAM])
        const scope = yield* Scope.make()
        const attachment = yield* client.attacher.attach(goTarget(9)).pipe(Scope.provide(scope))
        assert.deepStrictEqual(attachment.symbols, [
          "net/http.(*Transport).roundTrip",
          "net/http.(*persistConn).roundTrip"
        ])
        const programs = new Set((yield* kernel.liveLinks).map((l) => l.program))
        assert.deepStrictEqual([...programs], [
          "uprobe_roundTrip",
          "uprobe_roundTrip_ret",
          NetHttpClient.PUBLISH_PROGRAM
        ])
        yield* Scope.close(scope, Exit.void)
      }),
      Client.layer
    ))

  it.effect("with bpf_probe_write_user: attaches the header writer on Header.writeSubset", () =>
    run(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const client = yield* ClientInjecting.tag
        const load = (yield* kernel.events).find((e) => e._tag === "Load" && e.object === "nethttp_client")
        assert.deepStrictEqual(load?._tag === "Load" ? load.disablePrograms : ["x"], [])
        const attachment = yield* client.attacher.attach(goTarget(9))
        assert.deepStrictEqual(attachment.symbols, [
          "net/http.(*Transport).roundTrip",
          "net/http.(*persistConn).roundTrip",
          "net/http.Header.writeSubset"
        ])
        const value = (yield* kernel.map("nethttp_client", "ps_targets")).get("09000000")!
        const offsets = NetHttpClient.Offsets.decode(value)
        assert.strictEqual(offsets.urlRawQuery, 88)
        assert.strictEqual(offsets.bufioWriterBuf, 16)
        assert.strictEqual(offsets.bufioWriterN, 40)
      }),
      ClientInjecting.layer
    ))

  it.effect("turns records into CLIENT spans: parent, url.full, 4xx/5xx and transport errors", () =>
    run(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const captured = yield* CapturedSpans
        const client = yield* Client.tag
        yield* kernel.push("nethttp_client", [
          clientRecord({ query: "a=1&b=2", propagated: true }),
          clientRecord({ linked: true, localPort: 51234 }),
          clientRecord({ status: 404, parent: 0 }),
          clientRecord({ status: 0, hasError: true, host: "127.0.0.1:1", path: "/nowhere" }),
          clientRecord({ scheme: "https", host: "example.test", path: "/", method: "get" })
        ])
        yield* Effect.forkChild(client.runner.run)
        const [ok, linked, notFound, transport, https] = yield* captured.take(5)
        assert.strictEqual(linked!.attributes["network.local.port"], 51234)
        assert.deepStrictEqual(ok, {
          pid: 4242,
          probe: "nethttp_client",
          traceId: "0af7651916cd43dd8448eb211c80319c",
          spanId: "1111111111111111",
          parentSpanId: "b7ad6b7169203331",
          parentIsRemote: false,
          traceFlags: 1,
          name: "GET",
          kind: "client",
          startMonoNs: 1_000_000n,
          endMonoNs: 1_250_000n,
          attributes: {
            "http.request.method": "GET",
            "url.full": "http://127.0.0.1:8081/users/7?a=1&b=2",
            "server.address": "127.0.0.1",
            "server.port": 8081,
            "http.response.status_code": 200
          },
          status: { code: "unset" }
        })
        assert.strictEqual(notFound!.parentSpanId, undefined)
        assert.deepStrictEqual(notFound!.status, { code: "error", message: "HTTP 404" })
        assert.strictEqual(notFound!.attributes["error.type"], "404")
        assert.deepStrictEqual(transport!.status, { code: "error", message: "transport error" })
        assert.strictEqual(transport!.attributes["error.type"], "_OTHER")
        assert.strictEqual(transport!.attributes["http.response.status_code"], undefined)
        assert.strictEqual(https!.attributes["server.port"], 443)
        assert.strictEqual(https!.attributes["http.request.method"], "_OTHER")
        assert.strictEqual(https!.attributes["http.request.method_original"], "get")
        assert.strictEqual(https!.name, "HTTP")
        // The client's durations go into its own http.client.request.duration: no url.full, no local port.
        const measured = yield* (yield* CapturedMeasurements).take(5)
        assert.deepStrictEqual(measured.map((m) => m.instrument.name), new Array(5).fill("http.client.request.duration"))
        assert.deepStrictEqual(measured[0]!.attributes, {
          "http.request.method": "GET",
          "server.address": "127.0.0.1",
          "server.port": 8081,
          "http.response.status_code": 200
        })
        assert.strictEqual(measured[2]!.attributes["error.type"], "404")
      }),
      Client.layer
    ))
})

describe("Http helpers", () => {
  it("splits host and port", () => {
    assert.deepStrictEqual(Http.splitHostPort("127.0.0.1:8080"), { host: "127.0.0.1", port: 8080 })
    assert.deepStrictEqual(Http.splitHostPort("[::1]:443"), { host: "::1", port: 443 })
    assert.deepStrictEqual(Http.splitHostPort("example.test"), { host: "example.test" })
    assert.deepStrictEqual(Http.splitHostPort("::1"), { host: "::1" })
    assert.deepStrictEqual(Http.splitHostPort("h:99999"), { host: "h" })
  })

  it("takes the path part of a ServeMux pattern as the route", () => {
    assert.strictEqual(Http.routeOfPattern("GET /users/{id}"), "/users/{id}")
    assert.strictEqual(Http.routeOfPattern("GET example.test/a/{$}"), "/a/{$}")
    assert.strictEqual(Http.routeOfPattern("/static/"), "/static/")
    assert.strictEqual(Http.routeOfPattern(""), undefined)
  })
})

  it("builds a head's span with the parent its head (or the caller) names, and no parent fields for none", () => {
    const head = {
      pid: 42,
      traceId: new Uint8Array(16).fill(1),
      spanId: new Uint8Array(8).fill(2),
      parentSpanId: new Uint8Array(8).fill(3),
      parent: Http.Parent.remote,
      flags: 1,
      startNs: 10n,
      endNs: 25n
    }
    const attributes = { "http.request.method": "GET" }
    const child = Http.headSpan(head, "GET /a", "server", attributes, Http.UNSET)
    assert.deepStrictEqual(child, {
      pid: 42,
      traceId: head.traceId,
      spanId: head.spanId,
      parentSpanId: head.parentSpanId,
      parentIsRemote: true,
      traceFlags: 1,
      startMonoNs: 10n,
      endMonoNs: 25n,
      name: "GET /a",
      kind: "server",
      attributes,
      status: { code: "unset" }
    })
    // The same fields as spreading spanHead, which the probes with more fields still use.
    assert.deepStrictEqual(child, { ...Http.spanHead(head), name: "GET /a", kind: "server", attributes, status: Http.UNSET })
    assert.strictEqual(Http.headSpan({ ...head, parent: Http.Parent.local }, "x", "client", {}, Http.UNSET).parentIsRemote, false)
    const root = Http.headSpan({ ...head, parent: Http.Parent.none }, "x", "client", {}, Http.UNSET)
    assert.isFalse("parentSpanId" in root)
    assert.isFalse("parentIsRemote" in root)
    // The caller's parent wins over the head's: a record that only knows "local parent or none".
    assert.isFalse("parentSpanId" in Http.headSpan(head, "x", "client", {}, Http.UNSET, Http.Parent.none))
    assert.isTrue(Object.isFrozen(Http.UNSET))
  })

  /** A record head for the metricAttributes tests' spans. */
  const head = {
    pid: 1,
    traceId: new Uint8Array(16),
    spanId: new Uint8Array(8),
    parentSpanId: new Uint8Array(8),
    parent: Http.Parent.none,
    flags: 1,
    startNs: 1n,
    endNs: 2n
  }

  it("metricAttributes: the span's metric keys as one frozen object, the same object while the values repeat", () => {
    const span = (attributes: Record<string, string | number>) => Http.headSpan(head, "GET", "server", attributes, Http.UNSET)
    // Lists of their own, so that no other test's spans are in the caches.
    const keys = ["http.request.method", "http.route", "http.response.status_code"]
    const other = ["http.request.method"]
    const a = Http.metricAttributes(span({ "http.request.method": "GET", "url.path": "/u/1", "http.route": "/u/{id}", "http.response.status_code": 200 }), keys)
    assert.deepStrictEqual(a, { "http.request.method": "GET", "http.route": "/u/{id}", "http.response.status_code": 200 })
    assert.isTrue(Object.isFrozen(a))
    // Another path, the same metric set: the same object.
    const b = Http.metricAttributes(span({ "http.request.method": "GET", "url.path": "/u/2", "http.route": "/u/{id}", "http.response.status_code": 200 }), keys)
    assert.strictEqual(b, a)
    // Another key list in between does not disturb this one's.
    assert.deepStrictEqual(Http.metricAttributes(span({ "http.request.method": "POST" }), other), { "http.request.method": "POST" })
    // One value changed, one key absent: a new object, without the absent key.
    const c = Http.metricAttributes(span({ "http.request.method": "GET", "http.response.status_code": 404 }), keys)
    assert.notStrictEqual(c, a)
    assert.deepStrictEqual(c, { "http.request.method": "GET", "http.response.status_code": 404 })
    assert.isFalse("http.route" in c)
    // Back to the first set: its object again.
    const first = { "http.request.method": "GET", "http.route": "/u/{id}", "http.response.status_code": 200 }
    assert.strictEqual(Http.metricAttributes(span(first), keys), a)
    // Eight sets later the first one has left the cache: built anew, equal.
    for (let code = 500; code < 508; code++) Http.metricAttributes(span({ ...first, "http.response.status_code": code }), keys)
    const again = Http.metricAttributes(span(first), keys)
    assert.notStrictEqual(again, a)
    assert.deepStrictEqual(again, a)
  })

  it("lastOne: the last argument's answer again while the argument repeats, a new one when it changes", () => {
    const calls: Array<string> = []
    const split = Http.lastOne((s: string) => (calls.push(s), Http.splitHostPort(s)))
    const a = split("10.0.0.1:80")
    assert.strictEqual(split("10.0.0.1:80"), a)
    // Equal content in another string object is the same argument.
    assert.strictEqual(split(["10.0.0.1", "80"].join(":")), a)
    assert.deepStrictEqual(split("10.0.0.2:81"), { host: "10.0.0.2", port: 81 })
    assert.deepStrictEqual(split("10.0.0.1:80"), { host: "10.0.0.1", port: 80 })
    assert.deepStrictEqual(calls, ["10.0.0.1:80", "10.0.0.2:81", "10.0.0.1:80"])
    // An undefined answer is remembered too; the first call is never taken for a repeat.
    const route = Http.lastOne(Http.routeOfPattern)
    assert.strictEqual(route(""), undefined)
    assert.strictEqual(route("GET /a/{id}"), "/a/{id}")
    assert.strictEqual(route(""), undefined)
  })

  it("protocolVersion: the semconv spelling, from the table made once and past it", () => {
    const cases: Array<[number, number, string | undefined]> = [
      [0, 0, undefined], [0, 9, undefined], [1, 0, "1.0"], [1, 1, "1.1"], [2, 0, "2"], [2, 1, "2.1"], [3, 0, "3"],
      [3, 9, "3.9"], [4, 0, "4"], [1, 12, "1.12"]
    ]
    assert.deepStrictEqual(cases.map(([major, minor]) => Http.protocolVersion(major, minor)), cases.map(([, , v]) => v))
  })

  it("normalizeMethod: one shared answer per known method; an unknown one keeps the original", () => {
    assert.strictEqual(Http.normalizeMethod("GET"), Http.normalizeMethod("GET"))
    assert.deepStrictEqual(Http.normalizeMethod("PATCH"), { method: "PATCH" })
    assert.isTrue(Object.isFrozen(Http.normalizeMethod("GET")))
    assert.deepStrictEqual(Http.normalizeMethod("get"), { method: "_OTHER", original: "get" })
  })

  it("the server span of each record in a run of alternating routes, hosts and peers is its own", () => {
    const decode = (over: Parameters<typeof serverRecord>[0]) => NetHttpServer.Record.decode(serverRecord(over))
    const records = [
      decode({ pattern: "GET /a/{id}", host: "a.test:8080", remote: "10.0.0.1:5000" }),
      decode({ pattern: "GET /b/{id}", host: "b.test:9090", remote: "10.0.0.2:6000", method: "POST" }),
      decode({ pattern: "", host: "c.test", remote: "[::1]:7000" })
    ]
    const view = (s: ReturnType<typeof NetHttpServer.toSpan>): Array<unknown> =>
      [s.name, s.attributes["http.route"], s.attributes["server.address"], s.attributes["server.port"],
        s.attributes["network.peer.address"], s.attributes["network.peer.port"]]
    const expected: Array<Array<unknown>> = [
      ["GET /a/{id}", "/a/{id}", "a.test", 8080, "10.0.0.1", 5000],
      ["POST /b/{id}", "/b/{id}", "b.test", 9090, "10.0.0.2", 6000],
      ["GET", undefined, "c.test", undefined, "::1", 7000]
    ]
    for (const i of [0, 0, 1, 0, 2, 2, 1, 0]) assert.deepStrictEqual(view(NetHttpServer.toSpan(records[i]!)), expected[i])
  })

  it("metricAttributes: a key list whose sets mostly miss builds them unfrozen for a while, then tries the cache again", () => {
    const keys = ["http.route"]
    const set = (route: string) =>
      Http.metricAttributes({ ...Http.headSpan(head, "GET", "server", { "http.route": route }, Http.UNSET) }, keys)
    // A window of distinct sets: every span missed.
    for (let i = 0; i < Http.METRIC_SET_TRIAL; i++) assert.isTrue(Object.isFrozen(set(`/r${i}`)))
    // Bypassing: built anew and unfrozen even where the set repeats.
    const bypassed = set("/same")
    assert.deepStrictEqual(bypassed, { "http.route": "/same" })
    assert.isFalse(Object.isFrozen(bypassed))
    assert.notStrictEqual(set("/same"), bypassed)
    for (let i = 2; i < Http.METRIC_SET_BYPASS; i++) set("/same")
    // The bypass is over: the set is cached and shared again.
    const cached = set("/same")
    assert.isTrue(Object.isFrozen(cached))
    assert.strictEqual(set("/same"), cached)
  })

  it("metricAttributes: key lists past the first few get no cache (a list made per span adds no cache per span)", () => {
    const span = { ...Http.headSpan(head, "GET", "server", { "http.route": "/a", "url.path": "/a/1" }, Http.UNSET) }
    const sets = Array.from({ length: 64 }, () => Http.metricAttributes(span, ["http.route"]))
    for (const s of sets) assert.deepStrictEqual(s, { "http.route": "/a" })
    // The lists made first were cached (frozen, shared); the last ones are built anew and unfrozen, as without a cache.
    assert.isTrue(Object.isFrozen(sets[0]))
    assert.isFalse(Object.isFrozen(sets[63]))
  })

describe("connection keys (ps_conn_spans)", () => {
  const hex = (b: Uint8Array | undefined) => b === undefined ? undefined : Buffer.from(b).toString("hex")

  it("maps IPv4 to v4-mapped IPv6 and reads IPv6 literals", () => {
    assert.strictEqual(hex(Http.ipBytes("127.0.0.1")), "00000000000000000000ffff7f000001")
    assert.strictEqual(hex(Http.ipBytes("::ffff:127.0.0.1")), "00000000000000000000ffff7f000001")
    assert.strictEqual(hex(Http.ipBytes("::1")), "00000000000000000000000000000001")
    assert.strictEqual(hex(Http.ipBytes("fe80::1%eth0")), "fe800000000000000000000000000001")
    assert.strictEqual(hex(Http.ipBytes("2001:db8:0:0:1:0:0:1")), "20010db8000000000001000000000001")
    assert.strictEqual(hex(Http.ipBytes("2001:db8::")), "20010db8000000000000000000000000")
    assert.strictEqual(Http.ipBytes("256.0.0.1"), undefined)
    assert.strictEqual(Http.ipBytes("localhost"), undefined)
    assert.strictEqual(Http.ipBytes("1::2::3"), undefined)
    assert.strictEqual(Http.ipBytes("1:2:3:4:5:6:7"), undefined)
  })

  it("lays out client ip, server ip, client port, server port as struct ps_conn_key", () => {
    const key = Http.connKey("127.0.0.1:51234", "[::ffff:127.0.0.1]:8080")!
    assert.strictEqual(key.length, 40)
    const decoded = Http.ConnKey.decode(key)
    assert.strictEqual(hex(decoded.clientIp), "00000000000000000000ffff7f000001")
    assert.strictEqual(hex(decoded.serverIp), "00000000000000000000ffff7f000001")
    assert.strictEqual(decoded.clientPort, 51234)
    assert.strictEqual(decoded.serverPort, 8080)
    // Little-endian u16 ports right after the two addresses, then 4 bytes of padding.
    assert.strictEqual(hex(key.subarray(32)), "22c8901f00000000")
    assert.deepStrictEqual(Http.connKey("[::1]:40000", "[::1]:8080"), Http.connKey("[::1]:40000", "[0:0::1]:8080"))
    assert.strictEqual(Http.connKey("127.0.0.1", "127.0.0.1:8080"), undefined)
    assert.strictEqual(Http.connKey("example.test:1", "127.0.0.1:8080"), undefined)
  })

  it("resolves the TCP offsets only when every hop is known", () => {
    const all = {
      tcpConnConn: 0,
      connFd: 0,
      netFdFamily: 56,
      netFdSotype: 64,
      netFdLaddr: 96,
      netFdRaddr: 112,
      tcpAddrIp: 0,
      tcpAddrPort: 24
    }
    assert.strictEqual(Http.tcpValue(all, [80]).tcpEnabled, 1)
    assert.strictEqual(Http.tcpValue(all, [undefined]).tcpEnabled, 0)
    assert.strictEqual(Http.tcpValue({ ...all, tcpAddrPort: undefined }).tcpEnabled, 0)
    // Fields outside the one-read blocks (a future netFD or TCPAddr layout) turn the feature off, not read wrong.
    assert.strictEqual(Http.tcpValue({ ...all, netFdRaddr: 128 }).tcpEnabled, 0)
    assert.strictEqual(Http.tcpValue({ ...all, netFdSotype: 60 }).tcpEnabled, 0)
    assert.strictEqual(Http.tcpValue({ ...all, tcpAddrPort: 40 }).tcpEnabled, 0)
    assert.deepStrictEqual(Http.tcpValue({ ...all, tcpConnConn: 8, connFd: 8 }), {
      tcpEnabled: 1,
      tcpConnFd: 16,
      tcpNetFdFamily: 56,
      tcpNetFdSotypeW: 1,
      tcpNetFdLaddrW: 5,
      tcpNetFdRaddrW: 7,
      tcpAddrIp: 0,
      tcpAddrPortW: 3
    })
  })
})

describe("Lockdown", () => {
  it("reads the lockdown mode, the boot parameter and the forced config", () => {
    assert.deepStrictEqual(Lockdown.detect({ lockdown: "[none] integrity confidentiality\n" }), {
      permitted: true,
      reason: "kernel lockdown is none"
    })
    assert.deepStrictEqual(Lockdown.detect({ lockdown: "none [integrity] confidentiality\n" }), {
      permitted: false,
      reason: "kernel lockdown is integrity"
    })
    assert.deepStrictEqual(Lockdown.detect({ cmdline: "quiet lockdown=confidentiality" }), {
      permitted: false,
      reason: "kernel booted with lockdown=confidentiality"
    })
    assert.deepStrictEqual(Lockdown.detect({ config: "CONFIG_X=y\nCONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY=y\n" }), {
      permitted: false,
      reason: "kernel is built to force lockdown (integrity)"
    })
    assert.deepStrictEqual(Lockdown.detect({ config: "# CONFIG_LOCK_DOWN_KERNEL_FORCE_NONE is not set\n" }), {
      permitted: true,
      reason: "no kernel lockdown found"
    })
    // Without lockdown, still only a loader with CAP_SYS_ADMIN (bit 21) gets the helper.
    const none = "[none] integrity\n"
    assert.deepStrictEqual(Lockdown.detect({ lockdown: none, status: "CapEff:\t000000c000000000\n" }), {
      permitted: false,
      reason: "the agent lacks CAP_SYS_ADMIN, which bpf_probe_write_user needs"
    })
    assert.deepStrictEqual(Lockdown.detect({ lockdown: none, status: "CapEff:\t000001ffffffffff\n" }), {
      permitted: true,
      reason: "kernel lockdown is none"
    })
  })
})
