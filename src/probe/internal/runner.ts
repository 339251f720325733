/**
 * The Runner behind `Probe.instrument`: reads the probe's ring buffer a batch at a time, decodes each record, lets the
 * probe turn it into signals (`span` or `signals`), and hands the batch's spans, logs and measurements to the sink.
 * Everything a probe emits is checked against what it declared (its instruments), so nothing is silently dropped.
 */
import { Deferred, Effect, Exit, Queue, Schema, Stream } from "effect"
import type { RingBuffer } from "../../kernel/Bpf.ts"
import * as Binary from "../Binary.ts"
import type { Loaded, Runner, RunnerStats } from "../Capabilities.ts"
import type { Instruments } from "../Instruments.ts"
import type { Emit, LoadContext, LogInput, SpanInput } from "../Probe.ts"
import { ProbeSignalError } from "../ProbeError.ts"
import type { Attributes, LogData, Measurement, SpanData } from "../Telemetry.ts"
import { TelemetrySink } from "../Telemetry.ts"

/** What of a probe's options the Runner uses. */
export interface RunOptions {
  readonly record: Schema.Codec<unknown, Uint8Array>
  readonly span?: ((record: any, ctx: LoadContext<any>) => SpanInput | undefined) | undefined
  readonly signals?: ((record: any, emit: Emit<string>, ctx: LoadContext<any>) => void) | undefined
  readonly instruments?: Instruments | undefined
  readonly ringBuffer?: { readonly map?: string; readonly capacity?: number } | undefined
}

/**
 * Collects one batch's signals; `emit` throws `ProbeSignalError` on a recording the declaration does not allow. `S`:
 * the spans as `take` gives them, tagged with the probe's name (`SpanData`) or as the probe emitted them.
 */
export interface Collector<S = SpanData> {
  readonly emit: Emit<string>
  /** The signals emitted since the last `take`, and start afresh. */
  readonly take: () => { spans: Array<S>; logs: Array<LogData>; measurements: Array<Measurement> }
  /** Whether anything was emitted since the last `take`. */
  readonly size: () => number
}

/** A collector whose spans carry the probe's name (copies of what the probe emitted). */
export const makeCollector = (probe: string, instruments: Instruments = {}): Collector =>
  collectorOf(probe, instruments, (span) => ({ ...span, probe }))

/**
 * A collector that keeps the spans the probe emitted as they are, for a sink that is told the probe beside them
 * (`TelemetrySink.emitUnsafe`): the objects a probe hands over are neither copied nor changed.
 */
export const makeUntaggedCollector = (probe: string, instruments: Instruments = {}): Collector<SpanInput> =>
  collectorOf(probe, instruments, (span) => span)

const collectorOf = <S>(probe: string, instruments: Instruments, toSpan: (span: SpanInput) => S): Collector<S> => {
  let spans: Array<S> = []
  let logs: Array<LogData> = []
  let measurements: Array<Measurement> = []
  const fail = (instrument: string, reason: ProbeSignalError["reason"], message: string) => {
    throw new ProbeSignalError({ probe, instrument, reason, message: `probe ${probe}: ${message}` })
  }
  const emit: Emit<string> = {
    span: (span: SpanInput) => void spans.push(toSpan(span)),
    log: (log: LogInput) => void logs.push({ ...log, probe }),
    metric: (key: string, value: number, attributes: Attributes = {}, pid?: number) => {
      const instrument = Object.hasOwn(instruments, key) ? instruments[key] : undefined
      if (instrument === undefined) {
        return fail(key, "UndeclaredInstrument", `recorded into instrument "${key}", which it does not declare ` +
          `(declared: ${Object.keys(instruments).join(", ") || "none"})`)
      }
      // Counters only go up; histograms measure non-negative things (durations, sizes), as OpenTelemetry expects.
      const nonNegative = instrument.kind === "counter" || instrument.kind === "histogram"
      if (!Number.isFinite(value) || (nonNegative && value < 0)) {
        return fail(key, "InvalidValue", `recorded ${value} into ${instrument.kind} ${instrument.name}, which takes ` +
          (instrument.kind === "counter" ?
            "finite non-negative increments" :
            nonNegative ?
            "finite non-negative values" :
            "finite values"))
      }
      measurements.push({ pid, probe, instrument, value, attributes })
    }
  }
  return {
    emit,
    size: () => spans.length + logs.length + measurements.length,
    take: () => {
      const out = { spans, logs, measurements }
      spans = []
      logs = []
      measurements = []
      return out
    }
  }
}

/** The probe's record-to-signals function: `signals` as given, or `span` wrapped. */
export const signalsOf = (options: RunOptions): (record: unknown, emit: Emit<string>, ctx: LoadContext<any>) => void => {
  if (options.signals !== undefined) return options.signals
  const toSpan = options.span!
  return (record, emit, ctx) => {
    const span = toSpan(record, ctx)
    if (span !== undefined) emit.span(span)
  }
}

/**
 * One record's decoder: undefined for a record it rejects. A `Binary.schema` record is decoded by its layout directly
 * (the same length check, without a Schema run and an Exit per record: this is the hot path); any other Schema runs.
 */
export const recordDecoder = (record: Schema.Codec<unknown, Uint8Array>): (bytes: Uint8Array) => unknown => {
  const at = batchDecoder(record)
  return (bytes) => at(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), bytes, 0, bytes.length)
}

/**
 * The decoder of a record inside a batch (`bytes`, read through `view`, from `offset`, `length` bytes): a layout
 * reads it in place; any other Schema gets a copy of the record (it may keep the bytes it is given, and the batch
 * buffer is reused).
 */
export const batchDecoder = (
  record: Schema.Codec<unknown, Uint8Array>
): (view: DataView, bytes: Uint8Array, offset: number, length: number) => unknown => {
  const layout = Binary.layoutOf(record)
  if (layout !== undefined) {
    const size = layout.size
    const decodeAt = layout.decodeAt ??
      ((_view: DataView, bytes: Uint8Array, offset: number, length: number) =>
        layout.decode(bytes.subarray(offset, offset + length)))
    return (view, bytes, offset, length) => {
      if (length < size) return undefined
      try {
        return decodeAt(view, bytes, offset, length)
      } catch {
        // A layout that cannot read these bytes (a custom field type's check) rejects the record, as the Schema would.
        return undefined
      }
    }
  }
  const decode = Schema.decodeUnknownExit(record as Schema.Codec<unknown, Uint8Array, never, never>)
  return (_view, bytes, offset, length) => {
    const exit = decode(bytes.slice(offset, offset + length))
    return Exit.isSuccess(exit) ? exit.value : undefined
  }
}

export const makeRunner = (name: string, options: RunOptions, loaded: Loaded, config: unknown): Runner => {
  const decode = recordDecoder(options.record)
  const toSignals = signalsOf(options)
  const ctx = { config }
  const map = options.ringBuffer?.map ?? "events"
  const rbOptions = options.ringBuffer?.capacity === undefined ? undefined : { capacity: options.ringBuffer.capacity }
  let records = 0
  let decodeErrors = 0
  let skipped = 0
  let signalErrors = 0
  let unsupported = 0
  let consumerStats: Effect.Effect<{ readonly dropped: number }> = Effect.succeed({ dropped: 0 })
  /** The running loop's ring and a signal that the loop has finished, for `stop`. */
  let running: { readonly rb: RingBuffer; readonly done: Deferred.Deferred<void> } | undefined

  const run = Effect.gen(function*() {
    const sink = yield* TelemetrySink
    const emitUnsafe = sink.emitUnsafe
    // The spans copied with the probe's name only for a sink that is not told it beside them.
    const tagged = emitUnsafe === undefined ? makeCollector(name, options.instruments) : undefined
    const collector: Collector<SpanInput> = tagged ?? makeUntaggedCollector(name, options.instruments)
    const rb = yield* loaded.object.ringBuffer(map, rbOptions)
    consumerStats = rb.stats
    const done = Deferred.makeUnsafe<void>()
    running = { rb, done }
    yield* Effect.addFinalizer(() => Effect.andThen(Deferred.done(done, Exit.void), Effect.sync(() => running = undefined)))
    const warnings: Array<string> = []
    const warn = (message: string) => void warnings.push(message)

    /** Decodes one record and lets the probe turn it into signals, into the collector. */
    const take = (record: unknown, size: number) => {
      if (record === undefined) {
        if (++decodeErrors <= 10) warn(`probe ${name}: undecodable record of ${size} bytes`)
        return
      }
      const before = collector.size()
      try {
        toSignals(record, collector.emit, ctx)
      } catch (e) {
        // A probe that records what it did not declare (or throws) loses that record, counted and reported.
        if (++signalErrors <= 10) {
          warn(e instanceof ProbeSignalError ? e.message : `probe ${name}: signals failed: ${String(e)}`)
        }
        return
      }
      if (collector.size() === before) skipped++
      else records++
    }

    if (emitUnsafe !== undefined) {
      // The hot path: each batch is decoded and handed to the sink inside the ring's drain, synchronously. Warnings
      // (rare: the first few bad records) go to a fiber of their own, which logs them with this fiber's logger.
      const toLog = yield* Queue.unbounded<string>()
      yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(toLog), (w) => Effect.logWarning(w))))
      const decodeIn = batchDecoder(options.record)
      // The views of a batch buffer, made once per buffer (the live reader reuses one for every batch): a DataView
      // and a Buffer, whose string slicing the decoders use (a plain Uint8Array would be wrapped per record).
      let viewOf: Uint8Array | undefined
      let view: DataView = new DataView(new ArrayBuffer(0))
      let data: Uint8Array = Buffer.alloc(0)
      yield* rb.forEachBatch((batch) => {
        const { count, offsets } = batch
        if (batch.data !== viewOf) {
          viewOf = batch.data
          view = new DataView(viewOf.buffer, viewOf.byteOffset, viewOf.byteLength)
          data = Buffer.isBuffer(viewOf) ? viewOf : Buffer.from(viewOf.buffer, viewOf.byteOffset, viewOf.byteLength)
        }
        for (let i = 0; i < count; i++) {
          const at = offsets[2 * i]!
          const length = offsets[2 * i + 1]!
          take(decodeIn(view, data, at, length), length)
        }
        const { logs, measurements, spans } = collector.take()
        emitUnsafe(spans, logs, measurements, name)
        if (warnings.length > 0) Queue.offerAllUnsafe(toLog, warnings.splice(0))
      })
      // The ring has ended: what the last batches warned about is logged before the run ends.
      yield* Effect.flatMap(Queue.clear(toLog), (left) => Effect.forEach(left, (w) => Effect.logWarning(w), { discard: true }))
      return
    }

    // Records arrive in batches (one ring-buffer drain): decode the batch synchronously, then emit its signals.
    yield* Stream.runForEachArray(rb.records, (batch) => {
      for (let i = 0; i < batch.length; i++) take(decode(batch[i]!), batch[i]!.length)
      const { logs, measurements, spans } = tagged!.take()
      const effects: Array<Effect.Effect<void>> = []
      if (spans.length > 0) {
        effects.push(sink.spans !== undefined ? sink.spans(spans) : Effect.forEach(spans, sink.span, { discard: true }))
      }
      if (logs.length > 0) {
        if (sink.logs !== undefined) effects.push(sink.logs(logs))
        else unsupported += logs.length
      }
      if (measurements.length > 0) {
        if (sink.measurements !== undefined) effects.push(sink.measurements(measurements))
        else unsupported += measurements.length
      }
      if (warnings.length > 0) {
        effects.unshift(Effect.forEach(warnings.splice(0), (w) => Effect.logWarning(w), { discard: true }))
      }
      return effects.length === 0 ? Effect.void : effects.length === 1 ? effects[0]! : Effect.all(effects, { discard: true })
    })
  }).pipe(
    Effect.scoped,
    Effect.catch((e) => Effect.logError(`probe ${name}: ring buffer ${map} unavailable: ${e.message}`))
  )

  const stats: Effect.Effect<RunnerStats> = Effect.map(
    Effect.suspend(() => consumerStats),
    (s) => ({ records, decodeErrors, skipped, signalErrors, unsupported, consumerDropped: s.dropped })
  )
  const stop = Effect.suspend(() =>
    running === undefined ? Effect.void : Effect.andThen(running.rb.close, Deferred.await(running.done))
  )
  return { run, stats, stop }
}
