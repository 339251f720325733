/**
 * Type-level tests of probe signals: a probe records only into the instruments it declares, and gives a span
 * function or a signals function (checked by `tsc --noEmit -p .`).
 */
import * as Binary from "../src/probe/Binary.ts"
import * as Instruments from "../src/probe/Instruments.ts"
import * as Probe from "../src/probe/Probe.ts"

const Record = Binary.struct({ pid: Binary.u32, value: Binary.u32 })

export const Metrics = Probe.instrument({
  name: "typetest/metrics",
  object: Probe.objectFile("metrics"),
  manifest: { library: { module: "std" }, symbols: [{ name: "f", entry: "p" }] },
  record: Binary.schema(Record),
  instruments: {
    calls: Instruments.counter("calls", { unit: "{call}", description: "Calls." }),
    size: Instruments.histogram("size", { unit: "By", description: "Sizes." })
  },
  signals: (r, emit) => {
    emit.metric("calls", 1, {}, r.pid)
    emit.metric("size", r.value)
    // @ts-expect-error only declared instruments can be recorded into
    emit.metric("bytes", r.value)
    // @ts-expect-error a log record needs a severity and a body
    emit.log({ pid: r.pid, timeMonoNs: 0n, attributes: {} })
    // @ts-expect-error measurements are numbers
    emit.metric("calls", "1")
  }
})

export const NoInstruments = Probe.instrument({
  name: "typetest/noinstruments",
  object: Probe.objectFile("none"),
  manifest: { library: { module: "std" }, symbols: [{ name: "f", entry: "p" }] },
  record: Binary.schema(Record),
  signals: (r, emit) => {
    // @ts-expect-error a probe that declares no instruments records into none
    emit.metric("calls", 1, {}, r.pid)
  }
})
