/**
 * The signals a probe emits beyond spans: log records and measurements into the instruments it declares, through the
 * Runner on the fake kernel and through `definition.signals` without one. What a probe records outside its
 * declaration is a typed error, never a silent drop.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Logger } from "effect"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Instruments from "../../src/probe/Instruments.ts"
import * as Probe from "../../src/probe/Probe.ts"
import { ProbeSignalError } from "../../src/probe/ProbeError.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedLogs, CapturedMeasurements, CapturedSpans } from "../../src/probe/ProbeTest.ts"
import { type SpanData, TelemetrySink } from "../../src/probe/Telemetry.ts"

/** A record of a made-up connection probe: what happened (1 open, 2 close, 3 oops), to which pid, how long. */
const Event = Binary.struct({ kind: Binary.u8, _pad: Binary.pad(3), pid: Binary.u32, durationNs: Binary.u64 })
const event = (kind: number, pid = 7, durationNs = 1_500_000_000n) => Event.encode({ kind, pid, durationNs })

const opened = Instruments.counter("test.connections.opened", { unit: "{connection}", description: "Opened." })
const open = Instruments.upDownCounter("test.connections.open", { unit: "{connection}", description: "Open now." })
const duration = Instruments.histogram("test.connection.duration", {
  unit: "s",
  description: "How long connections lived.",
  boundaries: [1, 10]
})

/** A span the probe below hands over for every record of kind 6: one frozen object, shared. */
const LISTENED: Probe.SpanInput = Object.freeze({
  pid: 7,
  traceId: "0af7651916cd43dd8448eb211c80319c",
  spanId: "b7ad6b7169203331",
  traceFlags: 1,
  name: "listen",
  kind: "internal",
  startMonoNs: 1n,
  endMonoNs: 2n,
  attributes: {},
  status: { code: "unset" as const }
})

const Conns = Probe.instrument({
  name: "test/conns",
  object: Probe.objectFile("test_conns"),
  manifest: { library: { module: "std" }, symbols: [{ name: "net.(*netFD).connect", entry: "uprobe_connect" }] },
  record: Binary.schema(Event),
  instruments: { opened, open, duration },
  signals: (r, emit) => {
    const attributes = { "network.transport": "tcp" }
    switch (r.kind) {
      case 1:
        emit.metric("opened", 1, attributes, r.pid)
        emit.metric("open", 1, attributes, r.pid)
        return
      case 2:
        emit.metric("open", -1, attributes, r.pid)
        emit.metric("duration", Number(r.durationNs) / 1e9, attributes, r.pid)
        return
      case 3:
        emit.log({
          pid: r.pid,
          timeMonoNs: r.durationNs,
          severity: "error",
          body: "connection reset",
          attributes: { "exception.type": "ECONNRESET" },
          traceId: "0af7651916cd43dd8448eb211c80319c",
          spanId: "b7ad6b7169203331",
          traceFlags: 1
        })
        return
      case 4:
        // A bug on purpose: an instrument the probe never declared (only reachable by a cast).
        ;(emit.metric as (k: string, v: number) => void)("bytes", 10)
        return
      case 5:
        // Another bug: a counter cannot go down.
        emit.metric("opened", -1, attributes, r.pid)
        return
      case 6:
        emit.span(LISTENED)
    }
  }
})

const failure = <A, E>(exit: Exit.Exit<A, E>): E | undefined => {
  const reason = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
  return reason?._tag === "Fail" ? reason.error : undefined
}

describe("Probe signals without a kernel", () => {
  it.effect("one record can be any number of measurements into declared instruments, or a log record", () =>
    Effect.gen(function*() {
      const open1 = yield* Conns.signals(event(1))
      assert.deepStrictEqual(open1.spans, [])
      assert.deepStrictEqual(open1.logs, [])
      assert.deepStrictEqual(
        open1.measurements.map((m) => [m.instrument.name, m.value, m.pid, m.probe, m.attributes]),
        [
          ["test.connections.opened", 1, 7, "test/conns", { "network.transport": "tcp" }],
          ["test.connections.open", 1, 7, "test/conns", { "network.transport": "tcp" }]
        ]
      )
      const closed = yield* Conns.signals(event(2))
      assert.deepStrictEqual(closed.measurements.map((m) => [m.instrument.kind, m.value]), [
        ["upDownCounter", -1],
        ["histogram", 1.5]
      ])
      const log = yield* Conns.signals(event(3))
      assert.deepStrictEqual(log.logs, [{
        pid: 7,
        probe: "test/conns",
        timeMonoNs: 1_500_000_000n,
        severity: "error",
        body: "connection reset",
        attributes: { "exception.type": "ECONNRESET" },
        traceId: "0af7651916cd43dd8448eb211c80319c",
        spanId: "b7ad6b7169203331",
        traceFlags: 1
      }])
      assert.deepStrictEqual(Conns.instruments, { opened, open, duration })
    }))

  it.effect("recording into an undeclared instrument fails with ProbeSignalError naming it", () =>
    Effect.gen(function*() {
      const e = failure(yield* Effect.exit(Conns.signals(event(4))))
      assert.instanceOf(e, ProbeSignalError)
      assert.strictEqual(e?._tag, "ProbeSignalError")
      assert.strictEqual(e?._tag === "ProbeSignalError" && e.reason, "UndeclaredInstrument")
      assert.strictEqual(e?._tag === "ProbeSignalError" && e.instrument, "bytes")
      assert.strictEqual(
        e?.message,
        `probe test/conns: recorded into instrument "bytes", which it does not declare (declared: opened, open, duration)`
      )
    }))

  it.effect("a negative increment of a counter fails with ProbeSignalError (InvalidValue)", () =>
    Effect.gen(function*() {
      const e = failure(yield* Effect.exit(Conns.signals(event(5))))
      assert.strictEqual(e?._tag === "ProbeSignalError" && e.reason, "InvalidValue")
      assert.strictEqual(
        e?.message,
        "probe test/conns: recorded -1 into counter test.connections.opened, which takes finite non-negative increments"
      )
    }))

  it("a definition gives exactly one of span and signals, and declares each instrument name once", () => {
    const base = {
      object: "/x.bpf.o",
      manifest: { library: { module: "std" }, symbols: [{ name: "f", entry: "p" }] },
      record: Binary.schema(Event)
    }
    assert.throws(
      () => Probe.instrument({ ...base, name: "test/neither" }),
      "probe test/neither: invalid manifest: an instrument probe gives exactly one of `span` and `signals`"
    )
    assert.throws(
      () => Probe.instrument({ ...base, name: "test/both", span: () => undefined, signals: () => {} }),
      "probe test/both: invalid manifest: an instrument probe gives exactly one of `span` and `signals`"
    )
    assert.throws(
      () =>
        Probe.instrument({
          ...base,
          name: "test/twice",
          instruments: { a: opened, b: { ...opened } },
          signals: () => {}
        }),
      "probe test/twice: invalid manifest: instrument test.connections.opened is declared twice"
    )
  })

  it("histogram boundaries must ascend", () => {
    assert.throws(
      () => Instruments.histogram("h", { unit: "s", description: "", boundaries: [1, 1] }),
      "histogram h: bucket boundaries must be strictly ascending"
    )
  })
})

describe("Probe signals through the Runner", () => {
  it.effect("logs and measurements reach the sink; a broken record is counted and the rest still flows", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const conns = yield* Conns.tag
      const logs = yield* CapturedLogs
      const measurements = yield* CapturedMeasurements
      yield* kernel.push("test/conns", [event(1), event(4), event(3), event(5), event(2), event(9)])
      const fiber = yield* Effect.forkChild(conns.runner.run)
      const got = yield* measurements.take(4)
      const [log] = yield* logs.take(1)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(got.map((m) => `${m.instrument.name}=${m.value}`), [
        "test.connections.opened=1",
        "test.connections.open=1",
        "test.connections.open=-1",
        "test.connection.duration=1.5"
      ])
      assert.strictEqual(log!.body, "connection reset")
      assert.deepStrictEqual((yield* (yield* CapturedSpans).all).length, 0)
      // 3 records made signals, 2 broke the declaration (4, 5), 1 made nothing (9).
      const stats = yield* conns.runner.stats
      assert.deepStrictEqual({ ...stats }, {
        records: 3,
        decodeErrors: 0,
        skipped: 1,
        signalErrors: 2,
        unsupported: 0,
        consumerDropped: 0
      })
    }).pipe(Effect.provide(Conns.layer.pipe(Layer.provideMerge(ProbeTest.layer)))))

  it.effect("a sink that takes only spans counts the logs and measurements it could not take", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const conns = yield* Conns.tag
      let spans = 0
      const spansOnly = TelemetrySink.of({ span: () => Effect.sync(() => void spans++) })
      yield* kernel.push("test/conns", [event(1), event(3)])
      const fiber = yield* Effect.forkChild(conns.runner.run.pipe(Effect.provideService(TelemetrySink, spansOnly)))
      yield* Effect.yieldNow
      while ((yield* conns.runner.stats).records < 2) yield* Effect.sleep("5 millis")
      yield* Fiber.interrupt(fiber)
      const stats = yield* conns.runner.stats
      assert.strictEqual(stats.unsupported, 3)
      assert.strictEqual(spans, 0)
    }).pipe(Effect.provide(Conns.layer.pipe(Layer.provideMerge(ProbeTest.layer)))))

  it.live("emitUnsafe gets the spans the probe emitted, not copies, and the probe's name beside them", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const conns = yield* Conns.tag
      const got: Array<{ spans: ReadonlyArray<Probe.SpanInput>; probe: string }> = []
      const sink = TelemetrySink.of({
        span: () => Effect.die("the batch path must not use span"),
        emitUnsafe: (spans, _logs, _measurements, probe) => void got.push({ spans, probe })
      })
      const fiber = yield* Effect.forkChild(conns.runner.run.pipe(Effect.provideService(TelemetrySink, sink)))
      yield* Effect.yieldNow
      yield* kernel.push("test/conns", [event(6), event(6)])
      for (let i = 0; i < 100 && (yield* conns.runner.stats).records < 2; i++) yield* Effect.sleep("5 millis")
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(got.length, 1)
      assert.strictEqual(got[0]!.probe, "test/conns")
      assert.strictEqual(got[0]!.spans.length, 2)
      for (const span of got[0]!.spans) assert.strictEqual(span, LISTENED)
    }).pipe(Effect.provide(Conns.layer.pipe(Layer.provideMerge(ProbeTest.layer)))))

  it.live("a sink without emitUnsafe gets copies of the spans that carry the probe's name", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const conns = yield* Conns.tag
      const got: Array<SpanData> = []
      const sink = TelemetrySink.of({ span: (span) => Effect.sync(() => void got.push(span)) })
      const fiber = yield* Effect.forkChild(conns.runner.run.pipe(Effect.provideService(TelemetrySink, sink)))
      yield* Effect.yieldNow
      yield* kernel.push("test/conns", [event(6)])
      for (let i = 0; i < 100 && got.length < 1; i++) yield* Effect.sleep("5 millis")
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(got, [{ ...LISTENED, probe: "test/conns" }])
      assert.isFalse("probe" in LISTENED)
    }).pipe(Effect.provide(Conns.layer.pipe(Layer.provideMerge(ProbeTest.layer)))))

  it.live("a sink with emitUnsafe gets each batch inside the ring's own call; bad records are counted and logged", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const conns = yield* Conns.tag
      const batches: Array<{ spans: number; logs: Array<string>; measurements: Array<string> }> = []
      const warnings: Array<string> = []
      const sink = TelemetrySink.of({
        span: () => Effect.die("the batch path must not use span"),
        spans: () => Effect.die("the batch path must not use spans"),
        emitUnsafe: (spans, logs, measurements) =>
          void batches.push({
            spans: spans.length,
            logs: logs.map((l) => l.body),
            measurements: measurements.map((m) => `${m.instrument.name}=${m.value}`)
          })
      })
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel === "Warn") warnings.push(String(message))
      })
      const fiber = yield* Effect.forkChild(
        conns.runner.run.pipe(Effect.provideService(TelemetrySink, sink), Effect.provide(Logger.layer([logger])))
      )
      yield* Effect.yieldNow
      // One push is one batch: two good records, one too short to decode, one that breaks the declaration.
      yield* kernel.push("test/conns", [event(1), new Uint8Array(3), event(3), event(4)])
      for (let i = 0; i < 100 && (yield* conns.runner.stats).records < 2; i++) yield* Effect.sleep("5 millis")
      yield* kernel.push("test/conns", [event(2)])
      for (let i = 0; i < 100 && ((yield* conns.runner.stats).records < 3 || warnings.length < 2); i++) {
        yield* Effect.sleep("5 millis")
      }
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(batches, [
        {
          spans: 0,
          logs: ["connection reset"],
          measurements: ["test.connections.opened=1", "test.connections.open=1"]
        },
        { spans: 0, logs: [], measurements: ["test.connections.open=-1", "test.connection.duration=1.5"] }
      ])
      assert.deepStrictEqual(warnings.map((w) => w.replace(/^\[?"?|"?\]?$/g, "")), [
        "probe test/conns: undecodable record of 3 bytes",
        `probe test/conns: recorded into instrument "bytes", which it does not declare (declared: opened, open, duration)`
      ])
      const stats = yield* conns.runner.stats
      assert.deepStrictEqual({ ...stats }, {
        records: 3,
        decodeErrors: 1,
        skipped: 0,
        signalErrors: 1,
        unsupported: 0,
        consumerDropped: 0
      })
    }).pipe(Effect.provide(Conns.layer.pipe(Layer.provideMerge(ProbeTest.layer)))))
})
