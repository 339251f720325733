/**
 * The kafka_go probe without a kernel: its layouts against the built object's BTF, what records turn into
 * (`KafkaGo.signals` on hand-made records: exact spans and measurements) for a send, a batch, a failed send, a poll
 * linked to its producer, one under the caller's span and a root one, the key's rules; its load, attach and
 * applicability on the fake kernel.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import * as KafkaGo from "../../src/instrumentations/KafkaGo.ts"
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

/** A key's bytes as the record carries them: the first KEY_CAP, zero-padded. */
const keyBytes = (bytes: Uint8Array): Uint8Array => {
  const out = new Uint8Array(KafkaGo.KEY_CAP)
  out.set(bytes.subarray(0, KafkaGo.KEY_CAP))
  return out
}

/** A record: one message with key "order-1" sent to "orders" on 127.0.0.1:9092 under a sampled span. */
const record = (over: Partial<KafkaGo.Record> = {}) =>
  KafkaGo.Record.encode({
    startNs: 1_000_000n,
    endNs: 3_000_000n,
    traceId: Ids.fromHex(TRACE),
    spanId: Ids.fromHex(SPAN),
    parentSpanId: Ids.fromHex(PARENT),
    pid: 4242,
    flags: 1,
    parent: KafkaGo.Parent.local,
    opKind: KafkaGo.OpKind.send,
    hasError: false,
    batch: 1,
    partition: -1,
    offset: -1n,
    errCode: 0n,
    types: 0n,
    errAt: 0n,
    errCodeAt: 0n,
    addrTypeAt: 0n,
    addrAt: 0n,
    keySize: 7,
    hasKey: true,
    topicLen: 0,
    keyLen: 7,
    addrLen: 0,
    groupLen: 0,
    errTypeLen: 0,
    errKind: 0,
    errTflag: 0,
    addrColdLen: 0,
    topic: "orders",
    key: keyBytes(enc.encode("order-1")),
    addr: "127.0.0.1:9092",
    group: "",
    errType: "",
    ...over
  })

/** A consumer record: ReadMessage in group "billing" got offset 41 of partition 2, linked to its producer. */
const poll = (over: Partial<KafkaGo.Record> = {}) =>
  record({
    opKind: KafkaGo.OpKind.read,
    parent: KafkaGo.Parent.producer,
    group: "billing",
    partition: 2,
    offset: 41n,
    ...over
  })

/** The span and measurements of one record. */
const signals = (bytes: Uint8Array) =>
  Effect.gen(function*() {
    const out = ProbeTest.capturedSignals(yield* KafkaGo.KafkaGo.signals(bytes))
    assert.strictEqual(out.spans.length, 1)
    assert.strictEqual(out.logs.length, 0)
    const measured = out.measurements.map((m) => ({ ...m, instrument: m.instrument.name }))
    return { span: out.spans[0]!, measured }
  })

const broker = { "server.address": "127.0.0.1", "server.port": 9092 }
const send = {
  "messaging.system": "kafka",
  "messaging.operation.name": "send",
  "messaging.operation.type": "send",
  "messaging.destination.name": "orders"
}
const receive = {
  "messaging.system": "kafka",
  "messaging.operation.name": "poll",
  "messaging.operation.type": "receive",
  "messaging.destination.name": "orders"
}

describe("record layouts", () => {
  it.effect("Record and Target match the object's BTF", () =>
    Effect.gen(function*() {
      const btf = yield* BpfLive.readBtf(Probe.objectFile("kafka_go")).pipe(Effect.map(Option.getOrThrow), Effect.orDie)
      for (const layout of [KafkaGo.Record, KafkaGo.Target]) {
        const struct = btf.structs[layout.struct!]!
        assert.deepStrictEqual(Binary.check(layout, struct), [], layout.struct)
        assert.strictEqual(layout.size, struct.size)
      }
    }))
})

describe("a producer", () => {
  it.effect("one message: a PRODUCER span 'send {topic}' under the caller's span, its key, duration and count", () =>
    Effect.gen(function*() {
      const { measured, span } = yield* signals(record())
      assert.deepStrictEqual(span, {
        probe: "kafka_go",
        pid: 4242,
        traceId: TRACE,
        spanId: SPAN,
        parentSpanId: PARENT,
        parentIsRemote: false,
        traceFlags: 1,
        startMonoNs: 1_000_000n,
        endMonoNs: 3_000_000n,
        name: "send orders",
        kind: "producer",
        attributes: { ...send, ...broker, "messaging.kafka.message.key": "order-1" },
        status: { code: "unset" }
      })
      assert.deepStrictEqual(measured, [
        {
          pid: 4242,
          probe: "kafka_go",
          instrument: "messaging.client.operation.duration",
          value: 0.002,
          attributes: { ...send, ...broker }
        },
        {
          pid: 4242,
          probe: "kafka_go",
          instrument: "messaging.client.sent.messages",
          value: 1,
          attributes: {
            "messaging.system": "kafka",
            "messaging.operation.name": "send",
            "messaging.destination.name": "orders",
            ...broker
          }
        }
      ])
    }))

  it.effect("a batch: messaging.batch.message_count, no key, the count is the batch; a root span has no parent", () =>
    Effect.gen(function*() {
      const { measured, span } = yield* signals(record({ batch: 3, parent: KafkaGo.Parent.none }))
      assert.deepStrictEqual(span.attributes, { ...send, ...broker, "messaging.batch.message_count": 3 })
      assert.isUndefined(span.parentSpanId)
      assert.isUndefined(span.parentIsRemote)
      assert.deepStrictEqual(measured.map((m) => [m.instrument, m.value]), [
        ["messaging.client.operation.duration", 0.002],
        ["messaging.client.sent.messages", 3]
      ])
    }))

  it.effect("the key only when whole, UTF-8 and at most 32 bytes; no key, no attribute; no address, no server", () =>
    Effect.gen(function*() {
      const long = "k".repeat(40)
      const cut = yield* signals(record({ key: keyBytes(enc.encode(long)), keyLen: 32, keySize: 40 }))
      assert.notProperty(cut.span.attributes, "messaging.kafka.message.key")
      const binary = yield* signals(record({ key: keyBytes(new Uint8Array([0xff, 0xfe])), keyLen: 2, keySize: 2 }))
      assert.notProperty(binary.span.attributes, "messaging.kafka.message.key")
      const none = yield* signals(record({ hasKey: false, keyLen: 0, keySize: 0, key: keyBytes(new Uint8Array()) }))
      assert.notProperty(none.span.attributes, "messaging.kafka.message.key")
      const empty = yield* signals(record({ keyLen: 0, keySize: 0, key: keyBytes(new Uint8Array()) }))
      assert.strictEqual(empty.span.attributes["messaging.kafka.message.key"], "")
      const noAddr = yield* signals(record({ addr: "" }))
      assert.deepStrictEqual(noAddr.span.attributes, { ...send, "messaging.kafka.message.key": "order-1" })
      const noTopic = yield* signals(record({ topic: "" }))
      assert.strictEqual(noTopic.span.name, "send")
      assert.notProperty(noTopic.span.attributes, "messaging.destination.name")
    }))

  it.effect("a failed send: ERROR, error.type the Go type; a kafka.Error's code in the message", () =>
    Effect.gen(function*() {
      const kafkaError = yield* signals(record({
        hasError: true,
        errType: "*kafka.Error",
        errTflag: 2,
        errKind: 2,
        errCode: 3n
      }))
      assert.deepStrictEqual(kafkaError.span.status, { code: "error", message: "kafka.Error 3" })
      assert.strictEqual(kafkaError.span.attributes["error.type"], "kafka.Error")
      assert.deepStrictEqual(kafkaError.measured.map((m) => m.attributes["error.type"]), ["kafka.Error", "kafka.Error"])
      const other = yield* signals(record({ hasError: true, errType: "*fmt.wrapError", errTflag: 0, errKind: 22 }))
      assert.deepStrictEqual(other.span.status, { code: "error" })
      assert.strictEqual(other.span.attributes["error.type"], "*fmt.wrapError")
      const unknown = yield* signals(record({ hasError: true }))
      assert.deepStrictEqual(unknown.span.status, { code: "error" })
      assert.strictEqual(unknown.span.attributes["error.type"], "_OTHER")
    }))
})

describe("what the kernel could not read, read from the process", () => {
  it.live("the Writer's address type and string, a kafka.Error's type and code", () =>
    Effect.gen(function*() {
      // Types *kafka.networkAddress (0), *kafka.other (48) and kafka.Error (96, an int); their itabs (240, 256, 272);
      // a string header (288) for "broker:9092" (304); an int64 3 (320). runtime.types is the base.
      const { base, pid } = yield* holding((b) => {
        const m = Buffer.alloc(336)
        type(0, 22, 144).copy(m, 0)
        type(0, 22, 176).copy(m, 48)
        type(2, 2, 208).copy(m, 96)
        name("*kafka.networkAddress").copy(m, 144)
        name("*kafka.other").copy(m, 176)
        name("*kafka.Error").copy(m, 208)
        words(0n, b, 0n, b + 48n, 0n, b + 96n, b + 304n, 11n).copy(m, 240)
        Buffer.from("broker:9092").copy(m, 304)
        words(3n).copy(m, 320)
        return m
      })
      const cold = { pid, types: base, addr: "" }
      const kafka = yield* signals(record({ ...cold, addrTypeAt: base + 240n, addrAt: base + 288n }))
      assert.deepStrictEqual(
        [kafka.span.attributes["server.address"], kafka.span.attributes["server.port"]],
        ["broker", 9092]
      )
      // Another Addr type: its bytes mean nothing, no server.
      const other = yield* signals(record({ ...cold, addr: "x:1", addrTypeAt: base + 256n }))
      assert.strictEqual(other.span.attributes["server.address"], undefined)
      const failed = yield* signals(record({ ...cold, hasError: true, errAt: base + 272n, errCodeAt: base + 320n }))
      assert.deepStrictEqual(failed.span.status, { code: "error", message: "kafka.Error 3" })
    }).pipe(Effect.scoped))
})

describe("a consumer", () => {
  it.effect("linked to its producer: a CONSUMER span 'poll {topic}', remote parent, group, partition, offset", () =>
    Effect.gen(function*() {
      const { measured, span } = yield* signals(poll())
      const common = {
        ...receive,
        ...broker,
        "messaging.consumer.group.name": "billing",
        "messaging.destination.partition.id": "2"
      }
      assert.deepStrictEqual(span, {
        probe: "kafka_go",
        pid: 4242,
        traceId: TRACE,
        spanId: SPAN,
        parentSpanId: PARENT,
        parentIsRemote: true,
        traceFlags: 1,
        startMonoNs: 1_000_000n,
        endMonoNs: 3_000_000n,
        name: "poll orders",
        kind: "consumer",
        attributes: { ...common, "messaging.kafka.offset": 41, "messaging.kafka.message.key": "order-1" },
        status: { code: "unset" }
      })
      const { "messaging.operation.type": _, ...counted } = common
      assert.deepStrictEqual(measured, [
        {
          pid: 4242,
          probe: "kafka_go",
          instrument: "messaging.client.operation.duration",
          value: 0.002,
          attributes: common
        },
        {
          pid: 4242,
          probe: "kafka_go",
          instrument: "messaging.client.consumed.messages",
          value: 1,
          attributes: counted
        }
      ])
    }))

  it.effect("FetchMessage is the same operation; not linked: the caller's span (local) or none", () =>
    Effect.gen(function*() {
      const fetched = yield* signals(poll({ opKind: KafkaGo.OpKind.fetch }))
      assert.strictEqual(fetched.span.name, "poll orders")
      assert.strictEqual(fetched.span.kind, "consumer")
      const local = yield* signals(poll({ parent: KafkaGo.Parent.local }))
      assert.strictEqual(local.span.parentIsRemote, false)
      assert.strictEqual(local.span.parentSpanId, PARENT)
      const root = yield* signals(poll({ parent: KafkaGo.Parent.none }))
      assert.isUndefined(root.span.parentSpanId)
      const noGroup = yield* signals(poll({ group: "" }))
      assert.notProperty(noGroup.span.attributes, "messaging.consumer.group.name")
    }))

  it.effect("a failed read (no message): ERROR, no partition or offset, duration with error.type, no count", () =>
    Effect.gen(function*() {
      const { measured, span } = yield* signals(poll({
        parent: KafkaGo.Parent.local,
        hasError: true,
        errType: "*context.deadlineExceededError",
        errTflag: 2,
        errKind: 25,
        partition: -1,
        offset: -1n,
        hasKey: false,
        keyLen: 0,
        keySize: 0
      }))
      assert.deepStrictEqual(span.status, { code: "error" })
      assert.deepStrictEqual(span.attributes, {
        ...receive,
        ...broker,
        "messaging.consumer.group.name": "billing",
        "error.type": "context.deadlineExceededError"
      })
      assert.deepStrictEqual(measured.map((m) => m.instrument), ["messaging.client.operation.duration"])
    }))
})

const PKG = "github.com/segmentio/kafka-go"

/** A Go 1.26 target linking kafka-go `release` with the probe's functions, fields and symbols (v0.4.51's DWARF). */
const kafkaTarget = (
  pid: number,
  options: {
    readonly release?: string
    readonly fields?: boolean
    readonly types?: boolean
    /** What the program uses of kafka-go (default both): the other side's functions and types are linked out. */
    readonly side?: "producer" | "consumer" | "neither"
  } = {}
): Target => {
  const producer = options.side === undefined || options.side === "producer"
  const consumer = options.side === undefined || options.side === "consumer"
  return ProbeTest.target({
    pid,
    goVersion: "1.26.8",
    modules: { [PKG]: options.release ?? "v0.4.51" },
    functions: {
      ...(producer ? { [KafkaGo.symbols.write]: { entryOffset: 0x2f0880, returnOffsets: [0x2f0a00, 0x2f0b40] } } : {}),
      ...(consumer ?
        {
          [KafkaGo.symbols.read]: { entryOffset: 0x2df21d, returnOffsets: [0x2df468, 0x2df615, 0x2df6a0] },
          [KafkaGo.symbols.fetch]: { entryOffset: 0x2df6fd, returnOffsets: [0x2df900] }
        } :
        {})
    },
    fields: options.fields === false ? {} : {
      ...(producer ?
        {
          [`${PKG}.Writer.Addr`]: 0,
          [`${PKG}.Writer.Topic`]: 16,
          [`${PKG}.networkAddress.address`]: 16
        } :
        {}),
      ...(consumer ?
        {
          [`${PKG}.Reader.config`]: 0,
          [`${PKG}.ReaderConfig.Brokers`]: 0,
          [`${PKG}.ReaderConfig.GroupID`]: 24,
          [`${PKG}.ReaderConfig.Topic`]: 64
        } :
        {}),
      [`${PKG}.Message.Topic`]: 0,
      [`${PKG}.Message.Partition`]: 16,
      [`${PKG}.Message.Offset`]: 24,
      [`${PKG}.Message.Key`]: 40,
      [`${PKG}.Message.Value`]: 64,
      [`${PKG}.Message.Time`]: 128
    },
    symbols: options.types === false
      ? {}
      : { "runtime.types": { fileOffset: 0x500000, address: 0x900000n, kind: "object" } }
  })
}

const onFakeKernel = <A, E>(self: Effect.Effect<A, E, any>) =>
  self.pipe(
    Effect.provide(KafkaGo.KafkaGo.layer.pipe(Layer.provideMerge(ProbeTest.layer))),
    Effect.scoped
  ) as Effect.Effect<A, E>

describe("on the fake kernel", () => {
  it.effect("loads after go_context, reusing its maps", () =>
    onFakeKernel(Effect.gen(function*() {
      const loads = (yield* (yield* FakeKernel).events).flatMap((e) => e._tag === "Load" ? [e] : [])
      assert.deepStrictEqual(loads.map((l) => l.object), ["go_context", "kafka_go"])
      assert.deepStrictEqual(loads[1]!.reusedMaps, {
        go_spans: "go_context/go_spans",
        ps_conn_spans: "go_context/ps_conn_spans",
        ps_ctx_spans: "go_context/ps_ctx_spans"
      })
    })))

  it.effect("attach writes the offsets, Message's size, where the type data is (when known); six programs", () =>
    onFakeKernel(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const probe = yield* KafkaGo.KafkaGo.tag
      const entry = (target: Target, fn: string) => {
        const f = Option.getOrThrow(target.function(fn))
        return f.address + BigInt(f.entryOffset - f.fileOffset)
      }
      for (const [pid, types] of [[77, true], [78, false]] as const) {
        const scope = yield* Scope.make()
        // Without runtime.types (no symbol table, and a fake target has no file to read sections from): not known.
        const target = kafkaTarget(pid, { types })
        yield* probe.attacher.attach(target).pipe(Scope.provide(scope))
        const value = (yield* kernel.map("kafka_go", "ps_targets")).get(Buffer.from(Binary.pidKey(pid)).toString("hex"))
        assert.isDefined(value)
        assert.deepStrictEqual(KafkaGo.Target.decode(value!), {
          typesFromWrite: types ? 0x900000n - entry(target, KafkaGo.symbols.write) : 0n,
          typesFromRead: types ? 0x900000n - entry(target, KafkaGo.symbols.read) : 0n,
          typesFromFetch: types ? 0x900000n - entry(target, KafkaGo.symbols.fetch) : 0n,
          typesKnown: types ? 1 : 0,
          typeTflag: 20,
          typeKind: 23,
          typeStr: 40,
          writerAddr: 0,
          writerTopic: 16,
          networkAddress: 16,
          readerConfig: 0,
          configBrokers: 0,
          configGroup: 24,
          configTopic: 64,
          msgTopic: 0,
          msgPartition: 16,
          msgOffset: 24,
          msgKey: 40,
          msgValue: 64,
          msgSize: 152,
          writerOk: 1,
          readerOk: 1
        })
        if (pid === 77) {
          const programs = (yield* kernel.liveLinks).map((l) =>
            `${l.program}@${l.offsets?.map((o) => o.toString(16))}`
          )
          assert.deepStrictEqual(programs.sort(), [
            "uprobe_FetchMessage@2df6fd",
            "uprobe_FetchMessage_ret@2df900",
            "uprobe_ReadMessage@2df21d",
            "uprobe_ReadMessage_ret@2df468,2df615,2df6a0",
            "uprobe_WriteMessages@2f0880",
            "uprobe_WriteMessages_ret@2f0a00,2f0b40"
          ])
        }
        yield* Scope.close(scope, Exit.void)
        assert.isFalse(
          (yield* kernel.map("kafka_go", "ps_targets")).has(Buffer.from(Binary.pidKey(pid)).toString("hex"))
        )
      }
    })))

  it.effect("a program that only produces or only consumes: that side probed, the other's programs not attached", () =>
    onFakeKernel(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const probe = yield* KafkaGo.KafkaGo.tag
      for (const [pid, side, ok, programs] of [
        [90, "producer", [1, 0], ["uprobe_WriteMessages", "uprobe_WriteMessages_ret"]],
        [91, "consumer", [0, 1], [
          "uprobe_FetchMessage",
          "uprobe_FetchMessage_ret",
          "uprobe_ReadMessage",
          "uprobe_ReadMessage_ret"
        ]]
      ] as const) {
        const scope = yield* Scope.make()
        const attachment = yield* probe.attacher.attach(kafkaTarget(pid, { side })).pipe(Scope.provide(scope))
        assert.strictEqual(attachment.missingOptional.length, side === "producer" ? 2 : 1)
        const value = (yield* kernel.map("kafka_go", "ps_targets")).get(Buffer.from(Binary.pidKey(pid)).toString("hex"))
        const decoded = KafkaGo.Target.decode(value!)
        assert.deepStrictEqual([decoded.writerOk, decoded.readerOk], [...ok])
        // The absent side's offsets are unknown: 0, and its programs (not attached) would not read them.
        if (side === "producer") assert.strictEqual(decoded.configTopic, 0)
        else assert.strictEqual(decoded.writerTopic, 0)
        assert.deepStrictEqual((yield* kernel.liveLinks).map((l) => l.program).sort(), [...programs])
        yield* Scope.close(scope, Exit.void)
      }
    })))

  it.effect("not applicable, with the reason: no kafka-go, outside >=0.4.1 <0.5, no offsets (a stripped build)", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const why = (target: Target) => {
        const a = manager.inspect(target).find((i) => i.probe === "kafka_go")!.applicability
        return a._tag === "NotApplicable" ? a.reason : a._tag
      }
      assert.strictEqual(why(kafkaTarget(80)), "Applies")
      assert.strictEqual(why(ProbeTest.target({ pid: 81, goVersion: "1.26.8" })), `module ${PKG} is not in the binary`)
      assert.strictEqual(
        why(kafkaTarget(82, { release: "v0.4.0" })),
        `${PKG} v0.4.0 is outside the supported range >=0.4.1 <0.5`
      )
      assert.strictEqual(
        why(kafkaTarget(83, { fields: false })),
        `no offset for ${PKG}.Message.Topic (Go 1.26.8, ${PKG} v0.4.51)`
      )
      assert.strictEqual(why(kafkaTarget(84, { side: "neither" })), "none of the probe's symbols is in the binary")
    }).pipe(
      Effect.provide(ManagerM.layer.pipe(Layer.provide(KafkaGo.KafkaGo.layer), Layer.provideMerge(ProbeTest.layer))),
      Effect.scoped
    ))
})
