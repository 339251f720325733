/**
 * The go_redis probe without a kernel: its layouts against the built object's BTF, and what records turn into
 * (`GoRedis.signals` on hand-made records: exact spans and measurements) for commands, pipelines, each kind of
 * failure, and the opt-in db.query.text with its bounds; its load, attach and applicability on the fake kernel.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import * as GoRedis from "../../src/instrumentations/GoRedis.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import type { Target } from "../../src/probe/Target.ts"
import * as Ids from "../../src/probe/Ids.ts"
import { holding, name, type, words } from "./HeldMemory.ts"

const TRACE = "0af7651916cd43dd8448eb211c80319c"
const PARENT = "b7ad6b7169203331"
const SPAN = "1111111111111111"

const enc = new TextEncoder()

/** One `interface{}` argument as the BPF side records it. */
const arg = (kind: number, data: Uint8Array, size = data.length): Uint8Array => {
  const bytes = new Uint8Array(GoRedis.ARG_CAP)
  bytes.set(data.subarray(0, GoRedis.ARG_CAP))
  return GoRedis.Arg.encode({ size, kind, len: Math.min(data.length, GoRedis.ARG_CAP), at: 0n, data: bytes })
}
const str = (s: string) => arg(24, enc.encode(s))
const word = (set: (v: DataView) => void, kind: number) => {
  const b = new Uint8Array(8)
  set(new DataView(b.buffer))
  return arg(kind, b)
}

const argsBytes = (args: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(GoRedis.ARGS * GoRedis.Arg.size)
  args.slice(0, GoRedis.ARGS).forEach((a, i) => out.set(a, i * GoRedis.Arg.size))
  return out
}

/** A record: `GET user:1` on 127.0.0.1:6379, database 0, child of a sampled span, unless overridden. */
const record = (over: Partial<GoRedis.Record> = {}, args: ReadonlyArray<Uint8Array> = [str("get"), str("user:1")]) =>
  GoRedis.Record.encode({
    startNs: 1_000_000n,
    endNs: 1_250_000n,
    traceId: Ids.fromHex(TRACE),
    spanId: Ids.fromHex(SPAN),
    parentSpanId: Ids.fromHex(PARENT),
    pid: 4242,
    flags: 1,
    parent: 1,
    opKind: GoRedis.OpKind.command,
    hasError: false,
    batchSize: 0,
    argCount: args.length,
    db: 0n,
    opLen: 0,
    addrLen: 0,
    errTypeLen: 0,
    errKind: 0,
    errTflag: 0,
    errMsgLen: 0,
    errMsgColdLen: 0,
    types: 0n,
    errAt: 0n,
    errMsgAt: 0n,
    opAt: 0n,
    op: "get",
    addr: "127.0.0.1:6379",
    errType: "",
    errMsg: "",
    args: argsBytes(args),
    ...over
  })

const signals = (bytes: Uint8Array, config?: Partial<GoRedis.Config>) => Effect.map(GoRedis.GoRedis.signals(bytes, config), ProbeTest.capturedSignals)

/** The one span and one measurement a record gives. */
const one = (bytes: Uint8Array, config?: Partial<GoRedis.Config>) =>
  Effect.gen(function*() {
    const out = yield* signals(bytes, config)
    assert.strictEqual(out.spans.length, 1)
    assert.strictEqual(out.measurements.length, 1)
    assert.strictEqual(out.logs.length, 0)
    return { span: out.spans[0]!, measurement: out.measurements[0]! }
  })

const server = { "server.address": "127.0.0.1", "server.port": 6379 }

describe("record layouts", () => {
  it.effect("Record, Arg and Target match the object's BTF", () =>
    Effect.gen(function*() {
      const btf = yield* BpfLive.readBtf(Probe.objectFile("go_redis")).pipe(Effect.map(Option.getOrThrow), Effect.orDie)
      for (const layout of [GoRedis.Record, GoRedis.Arg, GoRedis.Target]) {
        const struct = btf.structs[layout.struct!]!
        assert.deepStrictEqual(Binary.check(layout, struct), [], layout.struct)
        assert.strictEqual(layout.size, struct.size)
      }
    }))
})

describe("a command", () => {
  it.effect("a CLIENT span named '{command} {address}:{port}', child of the goroutine's span, and its duration", () =>
    Effect.gen(function*() {
      const { measurement, span } = yield* one(record())
      assert.deepStrictEqual(span, {
        probe: "go_redis",
        pid: 4242,
        traceId: TRACE,
        spanId: SPAN,
        parentSpanId: PARENT,
        parentIsRemote: false,
        traceFlags: 1,
        startMonoNs: 1_000_000n,
        endMonoNs: 1_250_000n,
        name: "GET 127.0.0.1:6379",
        kind: "client",
        attributes: { "db.system.name": "redis", "db.operation.name": "GET", "db.namespace": "0", ...server },
        status: { code: "unset" }
      })
      assert.deepStrictEqual(
        { ...measurement, instrument: measurement.instrument.name },
        {
          pid: 4242,
          probe: "go_redis",
          instrument: "db.client.operation.duration",
          value: 0.00025,
          attributes: { "db.system.name": "redis", "db.operation.name": "GET", ...server }
        }
      )
      assert.deepStrictEqual(measurement.instrument, GoRedis.operationDuration)
    }))

  it.effect("no parent: a root span; another database index; a unix socket has no port", () =>
    Effect.gen(function*() {
      const root = (yield* one(record({ parent: 0 }))).span
      assert.isUndefined(root.parentSpanId)
      assert.isUndefined(root.parentIsRemote)
      const db3 = (yield* one(record({ db: 3n }))).span
      assert.strictEqual(db3.attributes["db.namespace"], "3")
      assert.strictEqual(db3.name, "GET 127.0.0.1:6379")
      const unix = yield* one(record({ addr: "/run/redis/redis.sock" }))
      assert.strictEqual(unix.span.name, "GET /run/redis/redis.sock")
      assert.deepStrictEqual(unix.span.attributes, {
        "db.system.name": "redis",
        "db.operation.name": "GET",
        "db.namespace": "0",
        "server.address": "/run/redis/redis.sock"
      })
      assert.notProperty(unix.measurement.attributes, "server.port")
    }))
})

describe("pipelines", () => {
  it.effect("one span named PIPELINE (MULTI for a transaction) with db.operation.batch.size from 2 commands on", () =>
    Effect.gen(function*() {
      const p = yield* one(record({ opKind: GoRedis.OpKind.pipeline, batchSize: 3, op: "" }, []))
      assert.strictEqual(p.span.name, "PIPELINE 127.0.0.1:6379")
      assert.deepStrictEqual(p.span.attributes, {
        "db.system.name": "redis",
        "db.operation.name": "PIPELINE",
        "db.namespace": "0",
        ...server,
        "db.operation.batch.size": 3
      })
      assert.deepStrictEqual(p.measurement.attributes, {
        "db.system.name": "redis",
        "db.operation.name": "PIPELINE",
        ...server
      })
      const tx = yield* one(record({ opKind: GoRedis.OpKind.txPipeline, batchSize: 2, op: "" }, []))
      assert.strictEqual(tx.span.name, "MULTI 127.0.0.1:6379")
      assert.strictEqual(tx.span.attributes["db.operation.name"], "MULTI")
      assert.strictEqual(tx.span.attributes["db.operation.batch.size"], 2)
      // A batch of one is no batch in the conventions' terms.
      const single = yield* one(record({ opKind: GoRedis.OpKind.pipeline, batchSize: 1, op: "" }, []))
      assert.notProperty(single.span.attributes, "db.operation.batch.size")
      // db.query.text is per command: a pipeline has none even when asked for.
      const asked = yield* one(record({ opKind: GoRedis.OpKind.pipeline, batchSize: 3, op: "" }, []), {
        queryText: true
      })
      assert.notProperty(asked.span.attributes, "db.query.text")
    }))
})

describe("what the kernel could not read, read from the process", () => {
  it.live("the command's name, its arguments, redis.Nil's type and text (constants on pages not mapped yet)", () =>
    Effect.gen(function*() {
      // Types string (0) and *proto.RedisError (48, a string kind stored with TFlagExtraStar), their names (96, 112);
      // "get" (136) as an interface{} (144) holding a string header (160); "user:1" (176); an int 42 (184);
      // "redis: nil" (192) behind a header (208); the error's itab (224). runtime.types is the base.
      const { base, pid } = yield* holding((b) => {
        const m = Buffer.alloc(240)
        type(0, 24, 96).copy(m, 0)
        type(2, 24, 112).copy(m, 48)
        name("string").copy(m, 96)
        name("*proto.RedisError").copy(m, 112)
        Buffer.from("get").copy(m, 136)
        words(b, b + 160n, b + 136n, 3n).copy(m, 144)
        Buffer.from("user:1").copy(m, 176)
        words(42n).copy(m, 184)
        Buffer.from("redis: nil").copy(m, 192)
        words(b + 192n, 10n, 0n, b + 48n).copy(m, 208)
        return m
      })
      const cold = (at: bigint, kind: number, size: number) =>
        GoRedis.Arg.encode({ size, kind, len: 0, at, data: new Uint8Array(GoRedis.ARG_CAP) })
      const bytes = record(
        { pid, types: base, op: "", opAt: base + 144n },
        [arg(0, new Uint8Array(0)), cold(base + 176n, 24, 6), cold(base + 184n, 2, 8)]
      )
      const { span } = yield* one(bytes, { queryText: true })
      assert.deepStrictEqual([span.name, span.attributes["db.query.text"]], ["GET 127.0.0.1:6379", "GET user:1 42"])
      // A missing key: redis.Nil is told by its type and text, both read here.
      const nil = yield* one(record({ pid, types: base, hasError: true, errAt: base + 224n, errMsgAt: base + 208n }))
      assert.deepStrictEqual(nil.span.status, { code: "unset" })
    }).pipe(Effect.scoped))
})

describe("failures", () => {
  const redisError = (msg: string) => ({
    hasError: true,
    errType: "proto.RedisError",
    errTflag: 0,
    errKind: 24,
    errMsg: msg
  })

  it.effect("a server error reply: ERROR with its text, db.response.status_code and error.type its prefix", () =>
    Effect.gen(function*() {
      const msg = "WRONGTYPE Operation against a key holding the wrong kind of value"
      const { measurement, span } = yield* one(record({ op: "lpush", ...redisError(msg) }, [str("lpush")]))
      assert.strictEqual(span.name, "LPUSH 127.0.0.1:6379")
      assert.deepStrictEqual(span.status, { code: "error", message: msg })
      assert.deepStrictEqual(span.attributes, {
        "db.system.name": "redis",
        "db.operation.name": "LPUSH",
        "db.namespace": "0",
        ...server,
        "db.response.status_code": "WRONGTYPE",
        "error.type": "WRONGTYPE"
      })
      assert.deepStrictEqual(measurement.attributes, {
        "db.system.name": "redis",
        "db.operation.name": "LPUSH",
        ...server,
        "error.type": "WRONGTYPE"
      })
    }))

  it.effect("redis.Nil (a missing key) is a reply, not a failure", () =>
    Effect.gen(function*() {
      const { measurement, span } = yield* one(record(redisError("redis: nil")))
      assert.deepStrictEqual(span.status, { code: "unset" })
      assert.notProperty(span.attributes, "error.type")
      assert.notProperty(span.attributes, "db.response.status_code")
      assert.notProperty(measurement.attributes, "error.type")
    }))

  it.effect("a RedisError without an upper-case prefix: error.type the Go type, the text as message", () =>
    Effect.gen(function*() {
      const { span } = yield* one(record(redisError("redis: client is closed")))
      assert.deepStrictEqual(span.status, { code: "error", message: "redis: client is closed" })
      assert.strictEqual(span.attributes["error.type"], "proto.RedisError")
      assert.notProperty(span.attributes, "db.response.status_code")
    }))

  it.effect("a Go error of another type (a dial or I/O error): error.type its type as %T prints it, no message", () =>
    Effect.gen(function*() {
      // A named type T stores its name as "*T" with TFlagExtraStar (shared with *T, which has no flag).
      const { span } = yield* one(record({ hasError: true, errType: "*net.OpError", errTflag: 0, errKind: 22 }))
      assert.deepStrictEqual(span.status, { code: "error" })
      assert.strictEqual(span.attributes["error.type"], "*net.OpError")
      const bare = yield* one(record({ hasError: true, errType: "*context.deadlineExceededError", errTflag: 2 }))
      assert.strictEqual(bare.span.attributes["error.type"], "context.deadlineExceededError")
    }))

  it.effect("an error whose type could not be read: error.type _OTHER", () =>
    Effect.gen(function*() {
      const { measurement, span } = yield* one(record({ hasError: true }))
      assert.deepStrictEqual(span.status, { code: "error" })
      assert.strictEqual(span.attributes["error.type"], "_OTHER")
      assert.strictEqual(measurement.attributes["error.type"], "_OTHER")
    }))
})

describe("db.query.text (opt-in)", () => {
  const args = [
    str("set"),
    str("session:42"),
    arg(24, enc.encode("x".repeat(32)), 100),
    word((v) => v.setBigInt64(0, -7n, true), 6),
    word((v) => v.setUint8(0, 200), 8),
    word((v) => v.setUint8(0, 1), 1),
    word((v) => v.setFloat64(0, 1.5, true), 14),
    arg(23, enc.encode("bytes"))
  ]

  it.effect("off by default; on: the command upper-cased and its arguments as redis-cli shows them", () =>
    Effect.gen(function*() {
      const bytes = record({ op: "set", argCount: 8 }, args)
      const off = yield* one(bytes)
      assert.notProperty(off.span.attributes, "db.query.text")
      const on = yield* one(bytes, { queryText: true })
      assert.strictEqual(on.span.attributes["db.query.text"], `SET session:42 ${"x".repeat(32)}... -7 200 1 1.5 bytes`)
      assert.notProperty(on.measurement.attributes, "db.query.text")
    }))

  it.effect("past 8 arguments ' ...'; cut at maxQueryText; a value of another kind is '?'", () =>
    Effect.gen(function*() {
      const more = yield* one(record({ op: "mset", argCount: 12 }, [str("mset"), ...args.slice(1)]), {
        queryText: true
      })
      assert.strictEqual(
        more.span.attributes["db.query.text"],
        `MSET session:42 ${"x".repeat(32)}... -7 200 1 1.5 bytes ...`
      )
      const cut = yield* one(record(), { queryText: true, maxQueryText: 5 })
      assert.strictEqual(cut.span.attributes["db.query.text"], "GET u")
      const other = yield* one(record({}, [str("get"), arg(25, new Uint8Array(8))]), { queryText: true })
      assert.strictEqual(other.span.attributes["db.query.text"], "GET ?")
    }))

  it.effect("a maxQueryText out of bounds is a config error naming the field", () =>
    Effect.gen(function*() {
      for (const bad of [0, GoRedis.QUERY_CAP + 1, 1.5]) {
        const exit = yield* Effect.exit(signals(record(), { maxQueryText: bad }))
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) ? Option.getOrThrow(Exit.findErrorOption(exit)) : undefined
        assert.strictEqual((error as { _tag: string })._tag, "ProbeConfigError")
        assert.match((error as { message: string }).message, /^probe go_redis: config field "maxQueryText": /)
      }
    }))
})

const PKG = "github.com/redis/go-redis/v9"

/** A Go 1.26 target linking go-redis `release` with the probe's functions and fields (DWARF values of 9.22.0). */
const redisTarget = (pid: number, options: { readonly release?: string; readonly fields?: boolean } = {}): Target =>
  ProbeTest.target({
    pid,
    goVersion: "1.26.8",
    modules: { [PKG]: options.release ?? "v9.22.0" },
    functions: {
      [GoRedis.symbols.process]: { entryOffset: 0x3a1000, returnOffsets: [0x3a1200, 0x3a1280] },
      [GoRedis.symbols.pipeline]: { entryOffset: 0x3a2000, returnOffsets: [0x3a2100] },
      [GoRedis.symbols.txPipeline]: { entryOffset: 0x3a3000, returnOffsets: [0x3a3100] }
    },
    fields: options.fields === false ? {} : {
      [`${PKG}.baseClient.opt`]: 8,
      [`${PKG}.Options.Addr`]: 16,
      [`${PKG}.Options.DB`]: 168,
      [`${PKG}.baseCmd.args`]: 16
    },
    symbols: { "runtime.types": { fileOffset: 0x500000, address: 0x900000n, kind: "object" } }
  })

const onFakeKernel = <A, E>(self: Effect.Effect<A, E, any>, config: Partial<GoRedis.Config> = {}) =>
  self.pipe(
    Effect.provide(GoRedis.GoRedis.layerWith(config).pipe(Layer.provideMerge(ProbeTest.layer))),
    Effect.scoped
  ) as Effect.Effect<A, E>

describe("on the fake kernel", () => {
  it.effect("loads after go_context, reusing its maps; db.query.text reading off unless configured", () =>
    Effect.gen(function*() {
      for (const [config, expected] of [[{}, 0n], [{ queryText: true }, 1n]] as const) {
        const load = yield* onFakeKernel(Effect.gen(function*() {
          const loads = (yield* (yield* FakeKernel).events).flatMap((e) => e._tag === "Load" ? [e] : [])
          assert.deepStrictEqual(loads.map((l) => l.object), ["go_context", "go_redis"])
          return loads[1]!
        }), config)
        assert.deepStrictEqual(load.reusedMaps, {
          go_spans: "go_context/go_spans",
          ps_conn_spans: "go_context/ps_conn_spans",
          ps_ctx_spans: "go_context/ps_ctx_spans"
        })
        assert.strictEqual(load.constants["go_redis_query_text"], expected)
      }
    }))

  it.effect("attach writes the offsets and where the type data is from each entry probe; six programs", () =>
    onFakeKernel(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const probe = yield* GoRedis.GoRedis.tag
      const scope = yield* Scope.make()
      const target = redisTarget(77)
      yield* probe.attacher.attach(target).pipe(Scope.provide(scope))
      const at = (fn: string) => {
        const f = Option.getOrThrow(target.function(fn))
        return 0x900000n - (f.address + BigInt(f.entryOffset - f.fileOffset))
      }
      const value = (yield* kernel.map("go_redis", "ps_targets")).get("4d000000")!
      assert.deepStrictEqual(GoRedis.Target.decode(value), {
        typesFromProcess: at(GoRedis.symbols.process),
        typesFromPipeline: at(GoRedis.symbols.pipeline),
        typesFromTxPipeline: at(GoRedis.symbols.txPipeline),
        typesKnown: 1,
        typeTflag: 20,
        typeKind: 23,
        typeStr: 40,
        clientOpt: 8,
        optAddr: 16,
        optDb: 168,
        cmdArgs: 16
      })
      const programs = (yield* kernel.liveLinks).map((l) => `${l.program}@${l.offsets?.map((o) => o.toString(16))}`)
      assert.deepStrictEqual(programs.sort(), [
        "uprobe_process@3a1000",
        "uprobe_processPipeline@3a2000",
        "uprobe_processPipeline_ret@3a2100",
        "uprobe_processTxPipeline@3a3000",
        "uprobe_processTxPipeline_ret@3a3100",
        "uprobe_process_ret@3a1200,3a1280"
      ])
      yield* Scope.close(scope, Exit.void)
      assert.isFalse((yield* kernel.map("go_redis", "ps_targets")).has("4d000000"))
    })))

  it.effect("not applicable, with the reason: no go-redis, another major version's range, no offsets", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const why = (target: Target) => {
        const a = manager.inspect(target).find((i) => i.probe === "go_redis")!.applicability
        return a._tag === "NotApplicable" ? a.reason : a._tag
      }
      assert.strictEqual(why(redisTarget(80)), "Applies")
      assert.strictEqual(why(ProbeTest.target({ pid: 81, goVersion: "1.26.8" })), `module ${PKG} is not in the binary`)
      assert.strictEqual(
        why(redisTarget(82, { release: "v10.0.0" })),
        `${PKG} v10.0.0 is outside the supported range >=9.0.0 <10`
      )
      assert.strictEqual(
        why(redisTarget(83, { fields: false })),
        `no offset for ${PKG}.baseClient.opt (Go 1.26.8, ${PKG} v9.22.0)`
      )
    }).pipe(
      Effect.provide(ManagerM.layer.pipe(Layer.provide(GoRedis.GoRedis.layer), Layer.provideMerge(ProbeTest.layer))),
      Effect.scoped
    ))
})
