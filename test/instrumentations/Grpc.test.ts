/**
 * The gRPC probe without a kernel: its layouts against the built object's BTF, what records turn into (exact spans
 * and measurements through `Grpc.signals` on hand-made records: unary OK, NotFound on both sides, the server-side
 * error codes, a stream, unknown status), the per-target value from a target's offsets and symbols, and the
 * manifest's answers for an unsupported grpc version, a binary without DWARF and a program without grpc; load,
 * attach and the Runner on the fake kernel.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import * as Grpc from "../../src/instrumentations/Grpc.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Manifest from "../../src/probe/Manifest.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedSpans } from "../../src/probe/ProbeTest.ts"
import * as Ids from "../../src/probe/Ids.ts"
import { holding, words } from "./HeldMemory.ts"

const realBtf = (object: string) =>
  BpfLive.readBtf(Probe.objectFile(object)).pipe(Effect.map(Option.getOrThrow), Effect.orDie)

const TRACE = "0af7651916cd43dd8448eb211c80319c"
const v4 = (a: number, b: number, c: number, d: number) =>
  Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d])

/** A server record of a unary Say that answered OK, parented by a client span over the connection map. */
const record = (over: Partial<Grpc.Record> = {}): Uint8Array =>
  Grpc.Record.encode({
    startNs: 1_000_000n,
    endNs: 1_250_000n,
    traceId: Ids.fromHex(TRACE),
    spanId: Ids.fromHex("b7ad6b7169203331"),
    parentSpanId: Ids.fromHex("1111111111111111"),
    pid: 4242,
    flags: 1,
    parent: 2,
    status: 0,
    kind: Grpc.Kind.server,
    statusKnown: true,
    linked: true,
    streaming: false,
    hasAddrs: true,
    methodLen: 0,
    authorityLen: 0,
    linkExact: true,
    localPort: 50051,
    peerPort: 40000,
    methodColdLen: 0,
    codeFunOff: 0,
    methodAt: 0n,
    codeItabAt: 0n,
    codeData: 0n,
    codeStatusFn: 0n,
    codeStringFn: 0n,
    localIp: v4(127, 0, 0, 1),
    peerIp: v4(127, 0, 0, 2),
    method: "/probescope.test.Echo/Say",
    authority: "",
    ...over
  })

/** A client record: the call's end, under a local parent, published on its connection. */
const clientRecord = (over: Partial<Grpc.Record> = {}): Uint8Array =>
  record({
    kind: Grpc.Kind.client,
    spanId: Ids.fromHex("1111111111111111"),
    parentSpanId: Ids.fromHex("2222222222222222"),
    parent: 1,
    localPort: 40000,
    peerPort: 50051,
    localIp: v4(127, 0, 0, 2),
    peerIp: v4(127, 0, 0, 1),
    authority: "localhost:50051",
    ...over
  })

const signals = (bytes: Uint8Array) => Effect.map(Grpc.Grpc.signals(bytes), ProbeTest.capturedSignals)

const serverAttributes = (method: string, code: number) => ({
  "rpc.system": "grpc",
  "rpc.service": "probescope.test.Echo",
  "rpc.method": method,
  "rpc.grpc.status_code": code,
  "server.address": "127.0.0.1",
  "server.port": 50051,
  "network.peer.address": "127.0.0.2",
  "network.peer.port": 40000
})

const clientAttributes = (method: string, code: number) => ({
  "rpc.system": "grpc",
  "rpc.service": "probescope.test.Echo",
  "rpc.method": method,
  "rpc.grpc.status_code": code,
  "server.address": "localhost",
  "server.port": 50051,
  "network.peer.address": "127.0.0.1",
  "network.peer.port": 50051
})

describe("layouts", () => {
  it.effect("match the C structs of the built object's BTF, field by field", () =>
    Effect.gen(function*() {
      const btf = yield* realBtf("grpc")
      for (const layout of [Grpc.Record, Grpc.Offsets]) {
        const struct = btf.structs[layout.struct!]!
        assert.deepStrictEqual(Binary.check(layout, struct), [], layout.struct)
        assert.strictEqual(layout.size, struct.size)
      }
      assert.strictEqual(btf.mapValues["ps_targets"], Grpc.Offsets.struct)
    }))
})

describe("spans and measurements", () => {
  it.live("a client error whose type the kernel could not tell: its itab's first method, read here, decides", () =>
    Effect.gen(function*() {
      // Two itabs (Fun at 24) and an errors.New value whose text is "EOF"; the method addresses stand for
      // (*status.Error).Error and errors.(*errorString).Error.
      const [STATUS_FN, STRING_FN] = [0x4a1000n, 0x4a2000n]
      const { base, pid } = yield* holding((b) =>
        Buffer.concat([
          words(0n, 0n, 0n, STATUS_FN),
          words(0n, 0n, 0n, STRING_FN),
          words(b + 80n, 3n),
          Buffer.from("EOF")
        ])
      )
      const code = (over: Partial<Grpc.Record>) =>
        Effect.map(
          signals(clientRecord({ pid, status: 5, codeFunOff: 24, codeStatusFn: STATUS_FN, ...over })),
          (s) => s.spans[0]!.attributes["rpc.grpc.status_code"]
        )
      // A *status.Error: the code the kernel read for it stands.
      assert.strictEqual(yield* code({ codeItabAt: base }), 5)
      // Another type: UNKNOWN, as status.Code says.
      assert.strictEqual(yield* code({ codeItabAt: base + 32n }), 2)
      // A stripped binary's errors.New("EOF"): a clean end.
      assert.strictEqual(yield* code({ codeItabAt: base + 32n, codeStringFn: STRING_FN, codeData: base + 64n }), 0)
      // Unreadable here too: UNKNOWN, never the unchecked code.
      assert.strictEqual(yield* code({ codeItabAt: 8n }), 2)
    }).pipe(Effect.scoped))

  it.effect("a client method the kernel could not read is read from the process's memory", () =>
    Effect.gen(function*() {
      // This process's executable at its first mapping starts "\x7fELF": three bytes from one past it stand for a
      // method name on a page the BPF side found unmapped.
      const first = fs.readFileSync("/proc/self/maps", "utf8").split("\n").find((l) => l.endsWith(process.execPath))!
      const at = BigInt(`0x${first.split("-")[0]}`) + 1n
      const cold = (over: Partial<Grpc.Record>) =>
        Effect.map(signals(clientRecord({ pid: process.pid, method: "", ...over })), (s) => s.spans[0]!)
      const read = yield* cold({ methodAt: at, methodColdLen: 3 })
      assert.deepStrictEqual([read.name, read.attributes["rpc.method"], read.attributes["rpc.service"]],
        ["ELF", "ELF", undefined])
      // Nothing there either: an empty method, as before.
      const lost = yield* cold({ methodAt: 8n, methodColdLen: 3 })
      assert.strictEqual(lost.attributes["rpc.method"], "")
    }))

  it.effect("a unary OK call: SERVER span named Service/Method, remote parent, status unset", () =>
    Effect.gen(function*() {
      const { spans, measurements } = yield* signals(record())
      assert.deepStrictEqual(spans, [{
        pid: 4242,
        traceId: TRACE,
        spanId: "b7ad6b7169203331",
        parentSpanId: "1111111111111111",
        parentIsRemote: true,
        traceFlags: 1,
        startMonoNs: 1_000_000n,
        endMonoNs: 1_250_000n,
        name: "probescope.test.Echo/Say",
        kind: "server",
        attributes: serverAttributes("Say", 0),
        status: { code: "unset" },
        probe: "grpc"
      }])
      assert.deepStrictEqual(measurements.map((m) => [m.instrument.name, m.instrument.unit, m.value, m.pid]), [
        ["rpc.server.call.duration", "s", 0.00025, 4242]
      ])
      assert.deepStrictEqual(measurements[0]!.attributes, {
        "rpc.system": "grpc",
        "rpc.service": "probescope.test.Echo",
        "rpc.method": "Say",
        "rpc.grpc.status_code": 0
      })
    }))

  it.effect("a gRPC NotFound: the client's span is ERROR, the server's is not (the caller's doing)", () =>
    Effect.gen(function*() {
      const server = yield* signals(record({ method: "/probescope.test.Echo/Find", status: 5 }))
      assert.deepStrictEqual(server.spans[0]!.status, { code: "unset" })
      assert.deepStrictEqual(server.spans[0]!.attributes, serverAttributes("Find", 5))
      const client = yield* signals(clientRecord({ method: "/probescope.test.Echo/Find", status: 5 }))
      assert.deepStrictEqual(client.spans, [{
        pid: 4242,
        traceId: TRACE,
        spanId: "1111111111111111",
        parentSpanId: "2222222222222222",
        parentIsRemote: false,
        traceFlags: 1,
        startMonoNs: 1_000_000n,
        endMonoNs: 1_250_000n,
        name: "probescope.test.Echo/Find",
        kind: "client",
        attributes: clientAttributes("Find", 5),
        status: { code: "error", message: "NOT_FOUND" },
        probe: "grpc"
      }])
      assert.deepStrictEqual(client.measurements.map((m) => [m.instrument.name, m.attributes]), [
        ["rpc.client.call.duration", {
          "rpc.system": "grpc",
          "rpc.service": "probescope.test.Echo",
          "rpc.method": "Find",
          "rpc.grpc.status_code": 5,
          "server.address": "localhost",
          "server.port": 50051
        }]
      ])
    }))

  it.effect("server: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS are errors", () =>
    Effect.gen(function*() {
      const statuses: Array<[number, unknown]> = []
      for (let code = 0; code <= 16; code++) {
        const { spans } = yield* signals(record({ status: code }))
        statuses.push([code, spans[0]!.status])
      }
      assert.deepStrictEqual(
        statuses.filter(([, s]) => (s as { code: string }).code === "error"),
        [
          [2, { code: "error", message: "UNKNOWN" }],
          [4, { code: "error", message: "DEADLINE_EXCEEDED" }],
          [12, { code: "error", message: "UNIMPLEMENTED" }],
          [13, { code: "error", message: "INTERNAL" }],
          [14, { code: "error", message: "UNAVAILABLE" }],
          [15, { code: "error", message: "DATA_LOSS" }]
        ]
      )
    }))

  it.effect("client: every non-OK code is an error", () =>
    Effect.gen(function*() {
      for (let code = 1; code <= 16; code++) {
        const { spans } = yield* signals(clientRecord({ status: code }))
        assert.deepStrictEqual(spans[0]!.status, { code: "error", message: Grpc.CODE_NAMES[code]! })
      }
      const ok = yield* signals(clientRecord())
      assert.deepStrictEqual(ok.spans[0]!.status, { code: "unset" })
    }))

  it.effect("a stream: the same span shape (the streaming flag changes nothing in the conventions)", () =>
    Effect.gen(function*() {
      const { spans } = yield* signals(record({ method: "/probescope.test.Echo/Count", streaming: true }))
      assert.strictEqual(spans[0]!.name, "probescope.test.Echo/Count")
      assert.deepStrictEqual(spans[0]!.attributes, serverAttributes("Count", 0))
    }))

  it.effect("no status written (handler never answered), no addresses, a root span: those attributes left out", () =>
    Effect.gen(function*() {
      const { spans, measurements } = yield* signals(record({
        statusKnown: false,
        hasAddrs: false,
        parent: 0,
        parentSpanId: Ids.fromHex("0000000000000000")
      }))
      assert.deepStrictEqual(spans[0]!.attributes, {
        "rpc.system": "grpc",
        "rpc.service": "probescope.test.Echo",
        "rpc.method": "Say"
      })
      assert.strictEqual(spans[0]!.parentSpanId, undefined)
      assert.deepStrictEqual(spans[0]!.status, { code: "unset" })
      assert.deepStrictEqual(measurements[0]!.attributes, {
        "rpc.system": "grpc",
        "rpc.service": "probescope.test.Echo",
        "rpc.method": "Say"
      })
    }))

  it.effect("client: a dial target without a port takes the connection's; a name without a service stays whole", () =>
    Effect.gen(function*() {
      const { spans } = yield* signals(clientRecord({ authority: "echo.internal", method: "weird" }))
      assert.strictEqual(spans[0]!.name, "weird")
      assert.deepStrictEqual(spans[0]!.attributes, {
        "rpc.system": "grpc",
        "rpc.method": "weird",
        "rpc.grpc.status_code": 0,
        "server.address": "echo.internal",
        "server.port": 50051,
        "network.peer.address": "127.0.0.1",
        "network.peer.port": 50051
      })
    }))
})

describe("helpers", () => {
  it("formatIp: IPv4 from v4-mapped, IPv6 in its short form", () => {
    assert.strictEqual(Grpc.formatIp(v4(10, 1, 2, 3)), "10.1.2.3")
    const v6 = new Uint8Array(16)
    v6[15] = 1
    assert.strictEqual(Grpc.formatIp(v6), "::1")
    const doc = Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0x02])
    assert.strictEqual(Grpc.formatIp(doc), "2001:db8::1:2")
  })

  it("splitMethod", () => {
    assert.deepStrictEqual(Grpc.splitMethod("/a.b.C/D"), { service: "a.b.C", method: "D" })
    assert.deepStrictEqual(Grpc.splitMethod("D"), { method: "D" })
  })
})

/** Offsets of the fixture built with Go 1.26.8 and grpc v1.85.0 (from its DWARF). */
const fields = {
  "google.golang.org/grpc/internal/transport.ServerStream.Stream": 0,
  "google.golang.org/grpc/internal/transport.Stream.method": 16,
  "google.golang.org/grpc/internal/transport.Stream.id": 108,
  "google.golang.org/grpc/internal/transport.Stream.ctx": 0,
  "google.golang.org/grpc/internal/status.Status.s": 0,
  "google.golang.org/genproto/googleapis/rpc/status.Status.Code": 40,
  "google.golang.org/grpc/internal/status.Error.s": 0,
  "google.golang.org/grpc.ClientConn.authority": 184,
  "google.golang.org/grpc.StreamDesc.ServerStreams": 24,
  "google.golang.org/grpc.StreamDesc.ClientStreams": 25,
  "google.golang.org/grpc.clientStreamWrapper.ClientStream": 0,
  "google.golang.org/grpc/internal/transport.http2Server.conn": 16,
  "google.golang.org/grpc/internal/transport.http2Client.conn": 128,
  "golang.org/x/net/http2.MetaHeadersFrame.HeadersFrame": 0,
  "golang.org/x/net/http2.MetaHeadersFrame.Fields": 8,
  "golang.org/x/net/http2.HeadersFrame.FrameHeader": 0,
  "golang.org/x/net/http2.FrameHeader.StreamID": 8,
  "golang.org/x/net/http2/hpack.HeaderField.Value": 16,
  "internal/abi.ITab.Fun": 24,
  "net.TCPConn.conn": 0,
  "net.conn.fd": 0,
  "net.netFD.family": 56,
  "net.netFD.sotype": 64,
  "net.netFD.laddr": 96,
  "net.netFD.raddr": 112,
  "net.TCPAddr.IP": 0,
  "net.TCPAddr.Port": 24
}

const functions = Object.fromEntries(
  [
    "google.golang.org/grpc.(*Server).handleStream",
    "google.golang.org/grpc/internal/transport.(*http2Server).writeStatus",
    "google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders",
    "google.golang.org/grpc.newClientStream",
    "google.golang.org/grpc.(*clientStream).finish",
    "google.golang.org/grpc/internal/transport.(*http2Client).NewStream",
    "google.golang.org/grpc/internal/transport.(*http2Client).createHeaderFields",
    "google.golang.org/grpc/internal/transport.(*loopyWriter).writeHeader"
  ].map((name) => [name, {}])
)

const target = (over: { modules?: Record<string, string>; fields?: Record<string, number> } = {}) =>
  ProbeTest.target({
    goVersion: "1.26.8",
    modules: over.modules ?? { "google.golang.org/grpc": "v1.85.0" },
    functions,
    fields: over.fields ?? fields,
    symbols: {
      [Grpc.STATUS_ERROR_METHOD]: { fileOffset: 0x41e000, address: 0x81e000n },
      [Grpc.IO_EOF]: { fileOffset: 0, kind: "object", address: 0xf84150n },
      [Grpc.ERROR_STRING_METHOD]: { fileOffset: 0xa1000, address: 0x4a1000n }
    }
  })

describe("manifest and per-target value", () => {
  it("applies to grpc v1.85.0 and computes every offset, the error method's and io.EOF's addresses", () => {
    const t = target()
    const applies = Manifest.check("grpc", Grpc.manifest, t)
    assert.strictEqual(applies._tag, "Applies")
    if (applies._tag !== "Applies") return
    // Its writeStatus is unexported: the exported name older releases have is the optional one missing.
    assert.deepStrictEqual(applies.missingOptional, [
      "google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus"
    ])
    const value = Grpc.offsetsValue(t, applies.offsets)
    assert.deepStrictEqual(value, {
      streamEmbed: Grpc.StreamEmbed.value,
      serverStreamStream: 0,
      streamMethod: 16,
      streamId: 108,
      statusS: 0,
      spbCode: 40,
      errorS: 0,
      ccAuthority: 184,
      descServerStreams: 24,
      descClientStreams: 25,
      csWrapped: 1,
      wrapperStream: 0,
      serverConn: 16,
      clientConn: 128,
      metaHeaders: 0,
      frameStreamId: 8,
      metaFields: 8,
      fieldValue: 16,
      statusErrorFn: 0x81e000n,
      ioEof: 0xf84150n,
      errorStringFn: 0x4a1000n,
      itabFun: 24,
      // Stream.ctx's data word, from the Stream: Stream.ctx (0) + 8.
      streamCtxData: 8,
      tcpEnabled: 1,
      tcpConnFd: 0,
      tcpNetFdFamily: 56,
      tcpNetFdSotypeW: 1,
      tcpNetFdLaddrW: 5,
      tcpNetFdRaddrW: 7,
      tcpAddrIp: 0,
      tcpAddrPortW: 3
    })
    // The bytes the BPF side gets round-trip through the layout.
    assert.deepStrictEqual(Grpc.Offsets.decode(Grpc.Offsets.encode(value)), value)
  })

  it("before 1.85 (no clientStreamWrapper) the returned stream is used as is", () => {
    const { ["google.golang.org/grpc.clientStreamWrapper.ClientStream"]: _, ...older } = fields
    const t = target({ modules: { "google.golang.org/grpc": "v1.83.2" }, fields: older })
    const applies = Manifest.check("grpc", Grpc.manifest, t)
    assert.strictEqual(applies._tag, "Applies")
    if (applies._tag !== "Applies") return
    const value = Grpc.offsetsValue(t, applies.offsets)
    assert.strictEqual(value.csWrapped, 0)
  })

  it("the server stream's three layouts: *Stream (< 1.69), *ServerStream embedding *Stream (1.69–1.76) or Stream", () => {
    const embedOf = (release: string, over: { fields?: Record<string, number>; writeStatus?: string } = {}) => {
      const fns = over.writeStatus === undefined ? functions : Object.fromEntries(
        Object.entries(functions).map(([name, f]) => [name.replace("writeStatus", over.writeStatus!), f])
      )
      const t = ProbeTest.target({
        goVersion: "1.26.8",
        modules: { "google.golang.org/grpc": release },
        functions: fns,
        fields: over.fields ?? fields
      })
      const applies = Manifest.check("grpc", Grpc.manifest, t)
      assert.strictEqual(applies._tag, "Applies", release)
      if (applies._tag !== "Applies") return undefined
      const v = Grpc.offsetsValue(t, applies.offsets)
      return [v.streamEmbed, v.serverStreamStream, applies.symbols.filter((s) => /[wW]riteStatus/.test(s))]
    }
    const { ["google.golang.org/grpc/internal/transport.ServerStream.Stream"]: _, ...noServerStream } = fields
    assert.deepStrictEqual(embedOf("v1.65.1", { fields: noServerStream, writeStatus: "WriteStatus" }), [
      Grpc.StreamEmbed.direct,
      0,
      ["google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus"]
    ])
    assert.deepStrictEqual(embedOf("v1.72.2", { fields: { ...fields, "google.golang.org/grpc/internal/transport.ServerStream.Stream": 0 } }), [
      Grpc.StreamEmbed.pointer,
      0,
      ["google.golang.org/grpc/internal/transport.(*http2Server).writeStatus"]
    ])
    assert.deepStrictEqual(embedOf("v1.77.0"), [
      Grpc.StreamEmbed.value,
      0,
      ["google.golang.org/grpc/internal/transport.(*http2Server).writeStatus"]
    ])
  })

  it("without Stream.ctx's offset no context is registered (0), and the probe still applies", () => {
    const { ["google.golang.org/grpc/internal/transport.Stream.ctx"]: _, ...noCtx } = fields
    const t = target({ fields: noCtx })
    const applies = Manifest.check("grpc", Grpc.manifest, t)
    assert.strictEqual(applies._tag, "Applies")
    if (applies._tag !== "Applies") return
    assert.strictEqual(applies.offsets.streamCtx, undefined)
    assert.strictEqual(Grpc.offsetsValue(t, applies.offsets).streamCtxData, 0)
  })

  it("not supported: a grpc outside the range, a missing offset, no grpc at all, each with its reason", () => {
    const reason = (t: ReturnType<typeof target>) => {
      const r = Manifest.check("grpc", Grpc.manifest, t)
      return r._tag === "NotApplicable" ? r.reason : r._tag
    }
    assert.strictEqual(
      reason(target({ modules: { "google.golang.org/grpc": "v1.59.0" } })),
      "google.golang.org/grpc v1.59.0 is outside the supported range >=1.60.0 <1.86.0"
    )
    const { ["google.golang.org/grpc/internal/transport.Stream.method"]: _, ...noMethod } = fields
    assert.strictEqual(
      reason(target({ fields: noMethod })),
      "no offset for google.golang.org/grpc/internal/transport.Stream.method " +
        "(Go 1.26.8, google.golang.org/grpc v1.85.0)"
    )
    assert.strictEqual(reason(target({ modules: {} })), "module google.golang.org/grpc is not in the binary")
  })
})

const probes = Grpc.Grpc.layer.pipe(Layer.provideMerge(ProbeTest.layer))

const run = <A, E>(self: Effect.Effect<A, E, any>) =>
  self.pipe(Effect.provide(probes), Effect.scoped) as Effect.Effect<A, E>

describe("on the fake kernel", () => {
  it.effect("loads after go_context reusing its maps, writes the per-target value, attaches every program", () =>
    run(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const loads = (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [e] : [])
      assert.deepStrictEqual(loads.map((l) => l.object), ["go_context", "grpc"])
      assert.deepStrictEqual(loads[1]!.reusedMaps, {
        go_spans: "go_context/go_spans",
        ps_conn_spans: "go_context/ps_conn_spans",
        ps_ctx_spans: "go_context/ps_ctx_spans"
      })
      const probe = yield* Grpc.Grpc.tag
      const scope = yield* Scope.make()
      const t = target()
      yield* probe.attacher.attach(t).pipe(Scope.provide(scope))
      const value = (yield* kernel.map("grpc", "ps_targets")).get("92100000")!
      assert.strictEqual(Grpc.Offsets.decode(value).statusErrorFn, 0x81e000n)
      const programs = (yield* kernel.liveLinks).map((l) => l.program).sort()
      assert.deepStrictEqual(programs, [
        "uprobe_clientStream_finish",
        "uprobe_createHeaderFields_ret",
        "uprobe_handleStream",
        "uprobe_handleStream_ret",
        "uprobe_http2Client_NewStream",
        "uprobe_loopy_writeHeader",
        "uprobe_newClientStream",
        "uprobe_newClientStream_ret",
        "uprobe_operateHeaders",
        "uprobe_writeStatus"
      ])
      yield* Scope.close(scope, Exit.void)
      assert.isFalse((yield* kernel.map("grpc", "ps_targets")).has("92100000"))
    })))

  it.effect("the Runner turns pushed records into spans and measurements", () =>
    run(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const probe = yield* Grpc.Grpc.tag
      yield* kernel.push("grpc", [record(), clientRecord({ method: "/probescope.test.Echo/Find", status: 5 })])
      yield* Effect.forkChild(probe.runner.run)
      const spans = yield* (yield* CapturedSpans).take(2)
      assert.deepStrictEqual(spans.map((s) => [s.probe, s.kind, s.name, s.status.code]), [
        ["grpc", "server", "probescope.test.Echo/Say", "unset"],
        ["grpc", "client", "probescope.test.Echo/Find", "error"]
      ])
    })))
})
