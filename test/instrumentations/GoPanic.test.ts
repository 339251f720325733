/**
 * The go/panic probe without a kernel: its layouts against the built object's BTF, what each record kind turns into
 * (`GoPanic.signals` on hand-made records: exact log records, spans and measurements), the panic values it can and
 * cannot describe, and its load and attach on the fake kernel (maps reused, per-target value).
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import * as GoPanic from "../../src/instrumentations/GoPanic.ts"
import * as NetHttpServer from "../../src/instrumentations/NetHttpServer.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import { CapturedLogs, CapturedSpans, TestTargets } from "../../src/probe/ProbeTest.ts"
import type { Target } from "../../src/probe/Target.ts"
import { functions, go126Fields, serverRecord } from "./fixtures.ts"
import * as Ids from "../../src/probe/Ids.ts"

const realBtf = (object: string) =>
  BpfLive.readBtf(Probe.objectFile(object)).pipe(Effect.map(Option.getOrThrow), Effect.orDie)

const TRACE = "0af7651916cd43dd8448eb211c80319c"
const SPAN = "b7ad6b7169203331"

/** The bytes of a value: u64 words little-endian, then raw bytes, padded to 32. */
const valueOf = (words: ReadonlyArray<bigint>, tail: ReadonlyArray<number> = []): Uint8Array => {
  const out = new Uint8Array(32)
  const view = new DataView(out.buffer)
  words.forEach((w, i) => view.setBigUint64(8 * i, BigInt.asUintN(64, w), true))
  out.set(tail, 8 * words.length)
  return out
}

/** A record as bytes: a PANIC of `panic("boom")` on a goroutine serving a sampled span, unless overridden. */
const record = (over: Partial<GoPanic.Record> = {}): Uint8Array =>
  GoPanic.Record.encode({
    timeNs: 2_000_000n,
    pid: 4242,
    kind: GoPanic.Kind.panic,
    hasPanic: true,
    panicNs: 1_500_000n,
    traceId: Ids.fromHex(TRACE),
    spanId: Ids.fromHex(SPAN),
    traceFlags: 1,
    hasSpan: true,
    typeKind: 24,
    typeTflag: 0,
    typeLen: 0,
    nilValue: false,
    messageLen: 0,
    types: 0n,
    typeAt: 0n,
    valueAt: 0n,
    messageAt: 0n,
    value: valueOf([0xc000012345n, 4n]),
    typeName: "string",
    message: "boom",
    server: new Uint8Array(NetHttpServer.Record.size),
    ...over
  })

const signals = (bytes: Uint8Array) => Effect.map(GoPanic.GoPanic.signals(bytes), ProbeTest.capturedSignals)

/** The one log record of a PANIC or RECOVERED record. */
const logOf = (bytes: Uint8Array) =>
  Effect.gen(function*() {
    const out = yield* signals(bytes)
    assert.strictEqual(out.spans.length, 0)
    assert.strictEqual(out.measurements.length, 0)
    assert.strictEqual(out.logs.length, 1)
    return out.logs[0]!
  })

describe("record layouts", () => {
  it.effect("match the C structs of go_panic.bpf.o's BTF, the server record included", () =>
    Effect.gen(function*() {
      const btf = yield* realBtf("go_panic")
      for (const layout of [GoPanic.Record, GoPanic.Target, NetHttpServer.Record]) {
        const struct = btf.structs[layout.struct!]!
        assert.deepStrictEqual(Binary.check(layout, struct), [], layout.struct)
        assert.strictEqual(layout.size, struct.size)
      }
      assert.strictEqual(btf.mapValues["ps_targets"], "go_panic_target")
      // The reused in-flight map has the server probe's value type in both objects.
      const server = yield* realBtf("nethttp_server")
      assert.strictEqual(btf.mapValues["nethttp_server_inflight"], "server_inflight")
      assert.strictEqual(server.mapValues["nethttp_server_inflight"], "server_inflight")
      assert.strictEqual(btf.structs["server_inflight"]!.size, server.structs["server_inflight"]!.size)
    }))
})

describe("log records", () => {
  it.effect("a panic: ERROR, exception.type and exception.message, the goroutine's span, the panic's time", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* logOf(record()), {
        pid: 4242,
        probe: "go_panic",
        timeMonoNs: 1_500_000n,
        severity: "error",
        body: "panic: boom",
        attributes: { "exception.type": "string", "exception.message": "boom" },
        traceId: TRACE,
        spanId: SPAN,
        traceFlags: 1
      })
    }))

  it.effect("a recovery: WARN at the recovery's time, the same exception and span", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* logOf(record({ kind: GoPanic.Kind.recovered })), {
        pid: 4242,
        probe: "go_panic",
        timeMonoNs: 2_000_000n,
        severity: "warn",
        body: "recovered from panic: boom",
        attributes: { "exception.type": "string", "exception.message": "boom" },
        traceId: TRACE,
        spanId: SPAN,
        traceFlags: 1
      })
    }))

  it.effect("a panic nothing recovered: FATAL at the exit's time, the same exception and span", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* logOf(record({ kind: GoPanic.Kind.fatal })), {
        pid: 4242,
        probe: "go_panic",
        timeMonoNs: 2_000_000n,
        severity: "fatal",
        body: "panic not recovered, the process exits: boom",
        attributes: { "exception.type": "string", "exception.message": "boom" },
        traceId: TRACE,
        spanId: SPAN,
        traceFlags: 1
      })
    }))

  it.effect("a goroutine with no active span: no trace context", () =>
    Effect.gen(function*() {
      const log = yield* logOf(record({ hasSpan: false, traceId: new Uint8Array(16), spanId: new Uint8Array(8) }))
      assert.deepStrictEqual(
        [log.traceId, log.spanId, log.traceFlags, log.body],
        [undefined, undefined, undefined, "panic: boom"]
      )
      assert.isFalse("traceId" in log)
    }))
})

describe("panic values", () => {
  const exception = (over: Partial<GoPanic.Record>) =>
    Effect.map(logOf(record(over)), (l) => [l.body, l.attributes] as const)

  it.effect("errors whose first field is their message: errors.New, fmt.Errorf", () =>
    Effect.gen(function*() {
      for (const type of ["*errors.errorString", "*fmt.wrapError", "*fmt.wrapErrors"]) {
        assert.deepStrictEqual(yield* exception({ typeKind: 22, typeName: type, message: "bad input" }), [
          "panic: bad input",
          { "exception.type": type, "exception.message": "bad input" }
        ])
      }
    }))

  it.effect("a message the kernel could not read (a constant on a page not mapped yet) is read from the process", () =>
    Effect.gen(function*() {
      // This process's executable at its first mapping starts "\x7fELF": the three bytes from one past it stand for
      // panic("ELF")'s text on a page the BPF side found unmapped.
      const first = fs.readFileSync("/proc/self/maps", "utf8").split("\n").find((l) => l.endsWith(process.execPath))!
      const at = BigInt(`0x${first.split("-")[0]}`) + 1n
      assert.deepStrictEqual(
        yield* exception({ pid: process.pid, value: valueOf([at, 3n]), message: "", messageAt: at }),
        ["panic: ELF", { "exception.type": "string", "exception.message": "ELF" }]
      )
      // The value not read (panic(42) with 42 a constant): read here. An int is the file's first eight bytes.
      const value = fs.readFileSync(process.execPath).subarray(0, 8).readBigInt64LE(0)
      assert.deepStrictEqual(
        yield* exception({ pid: process.pid, typeKind: 2, typeName: "int", value: valueOf([]), valueAt: at - 1n }),
        [`panic: ${value}`, { "exception.type": "int" }]
      )
    }))

  it.effect("a named type's stored name drops its extra '*' (TFlagExtraStar)", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* exception({ typeTflag: 2 | 1, typeName: "*main.reason", message: "quota" }), [
        "panic: quota",
        { "exception.type": "main.reason", "exception.message": "quota" }
      ])
    }))

  it.effect("runtime errors: errorString gets Go's 'runtime error: ' prefix, plainError does not", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(
        yield* exception({
          typeName: "runtime.errorString",
          message: "invalid memory address or nil pointer dereference"
        }),
        ["panic: runtime error: invalid memory address or nil pointer dereference", {
          "exception.type": "runtime.errorString",
          "exception.message": "runtime error: invalid memory address or nil pointer dereference"
        }]
      )
      assert.deepStrictEqual(
        yield* exception({ typeName: "runtime.plainError", message: "assignment to entry in nil map" }),
        ["panic: assignment to entry in nil map", {
          "exception.type": "runtime.plainError",
          "exception.message": "assignment to entry in nil map"
        }]
      )
    }))

  it.effect("bounds errors are formatted as the runtime formats them", () =>
    Effect.gen(function*() {
      const bounds = (x: bigint, y: bigint, signed: boolean, code: number) =>
        Effect.map(
          exception({
            typeKind: 25,
            typeName: "runtime.boundsError",
            message: "",
            value: valueOf([x, y], [signed ? 1 : 0, code])
          }),
          ([, a]) => a["exception.message"]
        )
      assert.strictEqual(yield* bounds(5n, 3n, true, 0), "runtime error: index out of range [5] with length 3")
      assert.strictEqual(yield* bounds(-1n, 3n, true, 0), "runtime error: index out of range [-1]")
      assert.strictEqual(
        yield* bounds(7n, 4n, false, 2),
        "runtime error: slice bounds out of range [:7] with capacity 4"
      )
      assert.strictEqual(yield* bounds(3n, 2n, true, 3), "runtime error: slice bounds out of range [3:2]")
      // Unsigned: the index is the u64, not a negative number.
      assert.strictEqual(
        yield* bounds(-1n, 3n, false, 0),
        "runtime error: index out of range [18446744073709551615] with length 3"
      )
      assert.strictEqual(
        yield* bounds(4n, 2n, true, 8),
        "runtime error: cannot convert slice with length 2 to array or pointer to array with length 4"
      )
      // An unknown code: no message rather than a wrong one.
      assert.strictEqual(yield* bounds(1n, 1n, true, 42), undefined)
    }))

  it.effect("panic(nil) is the runtime's *runtime.PanicNilError", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* exception({ nilValue: true, typeKind: 0, typeName: "", message: "" }), [
        "panic: panic called with nil argument",
        { "exception.type": "*runtime.PanicNilError", "exception.message": "panic called with nil argument" }
      ])
    }))

  it.effect("values that are neither strings nor known errors: type only, the body as Go prints basic kinds", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* exception({ typeKind: 2, typeName: "int", message: "", value: valueOf([-42n]) }), [
        "panic: -42",
        { "exception.type": "int" }
      ])
      const max = valueOf([-1n])
      assert.deepStrictEqual(yield* exception({ typeKind: 11, typeName: "uint64", message: "", value: max }), [
        "panic: 18446744073709551615",
        { "exception.type": "uint64" }
      ])
      const seven = valueOf([7n])
      assert.deepStrictEqual(yield* exception({ typeKind: 2, typeName: "main.Code", message: "", value: seven }), [
        "panic: main.Code(7)",
        { "exception.type": "main.Code" }
      ])
      const yes = valueOf([], [1])
      assert.deepStrictEqual(yield* exception({ typeKind: 1, typeName: "bool", message: "", value: yes }), [
        "panic: true",
        { "exception.type": "bool" }
      ])
      // A pointer to a user type: the first field BPF read may be anything, so it is not called a message.
      assert.deepStrictEqual(yield* exception({ typeKind: 22, typeName: "*main.MyErr", message: "op" }), [
        "panic: (*main.MyErr)",
        { "exception.type": "*main.MyErr" }
      ])
    }))

  it.effect("a type name that could not be read (no type data found): the message of a string still", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* exception({ typeName: "", message: "boom" }), [
        "panic: boom",
        { "exception.message": "boom" }
      ])
      assert.deepStrictEqual(yield* exception({ typeKind: 25, typeName: "", message: "" }), [
        "panic: (unknown type)",
        {}
      ])
    }))
})

describe("server spans ended by net/http's recovery", () => {
  const server = NetHttpServer.Record.decode(serverRecord({ pattern: "GET /users/{id}", status: 0 }))

  it.effect("the server probe's span with status ERROR, error.type, an exception event, and its duration", () =>
    Effect.gen(function*() {
      const out = yield* signals(record({
        kind: GoPanic.Kind.serverSpan,
        typeKind: 22,
        typeName: "*errors.errorString",
        message: "db down",
        server: NetHttpServer.Record.encode(server)
      }))
      assert.strictEqual(out.logs.length, 0)
      assert.deepStrictEqual(out.spans, [{
        pid: 4242,
        probe: "go_panic",
        traceId: TRACE,
        spanId: SPAN,
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
          "server.address": "127.0.0.1",
          "server.port": 8080,
          "network.peer.address": "127.0.0.1",
          "network.peer.port": 51234,
          "network.protocol.version": "1.1",
          "error.type": "*errors.errorString"
        },
        status: { code: "error", message: "panic: db down" },
        events: [{
          name: "exception",
          timeMonoNs: 1_500_000n,
          attributes: { "exception.type": "*errors.errorString", "exception.message": "db down" }
        }]
      }])
      assert.deepStrictEqual(out.measurements, [{
        pid: 4242,
        probe: "go_panic",
        instrument: GoPanic.GoPanic.instruments!.duration,
        value: 0.00025,
        attributes: {
          "http.request.method": "GET",
          "url.scheme": "http",
          "http.route": "/users/{id}",
          "network.protocol.version": "1.1",
          "error.type": "*errors.errorString"
        }
      }])
    }))

  it.effect("a handler that left by runtime.Goexit: ERROR without an exception event", () =>
    Effect.gen(function*() {
      const out = yield* signals(record({
        kind: GoPanic.Kind.serverSpan,
        hasPanic: false,
        typeName: "",
        message: "",
        server: NetHttpServer.Record.encode(server)
      }))
      const span = out.spans[0]!
      assert.deepStrictEqual(span.status, { code: "error", message: "handler exited by runtime.Goexit" })
      assert.strictEqual(span.attributes["error.type"], "runtime.Goexit")
      assert.isFalse("events" in span)
    }))
})

describe("records it cannot use", () => {
  it.effect("an unknown kind emits nothing", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* signals(record({ kind: 9 })), { spans: [], logs: [], measurements: [] })
    }))

  it.effect("a short record is a SchemaError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(signals(record().slice(0, 100)))
      assert.strictEqual(error._tag, "SchemaError")
      assert.include(error.message, `record is 100 bytes, expected at least ${GoPanic.Record.size}`)
    }))
})

/** A Go 1.26 target with the probe's symbols; `types` makes it offer `symbol("runtime.types")`. */
const panicTarget = (pid: number, types?: bigint): Target => {
  const target = ProbeTest.target({
    pid,
    goVersion: "1.26.8",
    functions: {
      ...functions,
      "runtime.gopanic": { entryOffset: 0x8298f, returnOffsets: [0x82b00] },
      "runtime.recovery": { entryOffset: 0x4b6ea, returnOffsets: [0x4b7f0] },
      "runtime.fatalpanic": { entryOffset: 0x4bc60, returnOffsets: [] },
      "net/http.(*conn).serve.func1": { entryOffset: 0x21a24f, returnOffsets: [0x21a400] },
      "net/http.(*http2serverConn).runHandler.func1": { entryOffset: 0x202e6f, returnOffsets: [0x203000] }
    },
    fields: { ...go126Fields, "internal/abi.Type.Str": 40 }
  })
  return {
    ...target,
    symbol: (name: string) =>
      name === "runtime.types" && types !== undefined ?
        Option.some({ name, kind: "object" as const, address: types, size: 0, fileOffset: undefined }) :
        Option.none()
  } as Target
}

const probes = GoPanic.GoPanic.layer.pipe(Layer.provideMerge(ProbeTest.layer))

const run = <A, E>(self: Effect.Effect<A, E, any>) =>
  self.pipe(Effect.provide(probes), Effect.scoped) as Effect.Effect<A, E>

/** The Manager over the probe (and what it brings along) on the fake kernel. */
const managed = ManagerM.layer.pipe(Layer.provide(GoPanic.GoPanic.layer), Layer.provideMerge(ProbeTest.layer))

describe("on the fake kernel", () => {
  it.effect("loads after go_context and nethttp_server, reusing their maps, without sampler constants", () =>
    run(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const loads = (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [e] : [])
      assert.deepStrictEqual(loads.map((l) => l.object), ["go_context", "nethttp_server", "go_panic"])
      assert.deepStrictEqual(loads[2]!.reusedMaps, {
        go_spans: "go_context/go_spans",
        ps_conn_spans: "go_context/ps_conn_spans",
        ps_ctx_spans: "go_context/ps_ctx_spans",
        nethttp_server_inflight: "nethttp_server/nethttp_server_inflight"
      })
      assert.deepStrictEqual(loads[2]!.constants, {})
    })))

  it.effect("writes where the type data is relative to gopanic's entry probe, and attaches the four programs", () =>
    run(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const probe = yield* GoPanic.GoPanic.tag
      const scope = yield* Scope.make()
      const target = panicTarget(77, 0x6a2000n)
      yield* probe.attacher.attach(target).pipe(Scope.provide(scope))
      const gopanic = Option.getOrThrow(target.function("runtime.gopanic"))
      const value = (yield* kernel.map("go_panic", "ps_targets")).get("4d000000")!
      assert.deepStrictEqual(GoPanic.Target.decode(value), {
        typesFromGopanic: 0x6a2000n - (gopanic.address + BigInt(gopanic.entryOffset - gopanic.fileOffset)),
        typesKnown: 1,
        typeTflag: 20,
        typeKind: 23,
        typeStr: 40,
        requestPattern: 232
      })
      const programs = (yield* kernel.liveLinks).map((l) => `${l.program}@${l.offsets?.map((o) => o.toString(16))}`)
      assert.deepStrictEqual(programs.sort(), [
        "uprobe_fatalpanic@4bc60",
        "uprobe_gopanic@8298f",
        // One link for both recovering closures (HTTP/1 and HTTP/2); Go 1.27's HTTP/2 closure is absent here.
        "uprobe_http_recover@21a24f,202e6f",
        "uprobe_recovery@4b6ea"
      ])
      yield* Scope.close(scope, Exit.void)
      assert.isFalse((yield* kernel.map("go_panic", "ps_targets")).has("4d000000"))
    })))

  it.effect("a target whose type data cannot be found: type names off, the rest on", () =>
    run(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const probe = yield* GoPanic.GoPanic.tag
      yield* probe.attacher.attach(panicTarget(78))
      const value = GoPanic.Target.decode((yield* kernel.map("go_panic", "ps_targets")).get("4e000000")!)
      assert.deepStrictEqual([value.typesKnown, value.typesFromGopanic], [0, 0n])
    })))

  it.effect("the Runner turns pushed records into log records and spans", () =>
    run(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const probe = yield* GoPanic.GoPanic.tag
      yield* kernel.push("go_panic", [
        record(),
        record({ kind: GoPanic.Kind.recovered }),
        record({ kind: GoPanic.Kind.serverSpan, server: serverRecord() })
      ])
      yield* Effect.forkChild(probe.runner.run)
      const logs = yield* (yield* CapturedLogs).take(2)
      assert.deepStrictEqual(logs.map((l) => [l.probe, l.severity, l.body]), [
        ["go_panic", "error", "panic: boom"],
        ["go_panic", "warn", "recovered from panic: boom"]
      ])
      const [span] = yield* (yield* CapturedSpans).take(1)
      assert.deepStrictEqual([span!.probe, span!.name, span!.status], [
        "go_panic",
        "GET /users/{id}",
        { code: "error", message: "panic: boom" }
      ])
    })))

  it.effect("under the Manager: any supported Go program, with or without net/http; older Go is left alone", () =>
    Effect.gen(function*() {
      const targets = yield* TestTargets
      const manager = yield* Manager
      yield* targets.start(panicTarget(77, 0x6a2000n))
      // A Go program that serves no HTTP: the runtime's functions only.
      yield* targets.start(ProbeTest.target({
        pid: 78,
        goVersion: "1.26.8",
        functions: {
          "runtime.newproc1": functions["runtime.newproc1"],
          "runtime.gopanic": { entryOffset: 0x1298f, returnOffsets: [] },
          "runtime.recovery": { entryOffset: 0x2b6ea, returnOffsets: [] },
          "runtime.fatalpanic": { entryOffset: 0x2bc60, returnOffsets: [] }
        }
      }))
      yield* Effect.repeat(Effect.andThen(Effect.yieldNow, manager.targets), {
        until: (attached) => attached.length === 2
      })
      const attached = (yield* manager.targets).map((t) => [t.pid, [...t.probes].sort()] as const)
      assert.deepStrictEqual([...attached].sort((a, b) => a[0] - b[0]), [
        [77, ["go_context", "go_panic", "nethttp_server"]],
        [78, ["go_context", "go_panic"]]
      ])
      const old = manager.inspect(ProbeTest.target({ pid: 79, goVersion: "1.24.13", functions }))
      const why = old.find((p) => p.probe === "go_panic")!.applicability
      assert.strictEqual(
        why._tag === "NotApplicable" ? why.reason : why._tag,
        "Go 1.24.13 is outside the supported range >=1.25 <1.28"
      )
    }).pipe(Effect.provide(managed)))

  it.effect("composes next to the server probe, as in a list of built-ins: each object loaded once", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const manager = yield* Manager
      assert.deepStrictEqual(manager.probes.map((p) => p.name), ["go_context", "nethttp_server", "go_panic"])
      const loads = (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [e.object] : [])
      assert.deepStrictEqual(loads.sort(), ["go_context", "go_panic", "nethttp_server"])
    }).pipe(Effect.provide(ManagerM.layer.pipe(
      Layer.provide(Layer.mergeAll(GoPanic.GoPanic.layer, NetHttpServer.NetHttpServer.layer)),
      Layer.provideMerge(ProbeTest.layer)
    ))))
})
