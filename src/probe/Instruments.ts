/**
 * Declaring the metric instruments a probe records into: `Probe.instrument({ instruments: { ... } })` takes them by
 * the key its `signals` uses (`emit.metric("duration", ...)`), so recording into anything else fails to type-check,
 * and at run time is a `ProbeSignalError`. Names, units and semantics follow OpenTelemetry's metrics data model.
 */
import type { Instrument, InstrumentKind } from "./Telemetry.ts"

export type { Instrument, InstrumentKind } from "./Telemetry.ts"

/** What every instrument says about itself. */
export interface Describe {
  /** UCUM unit, e.g. "s", "By", "{connection}". */
  readonly unit: string
  readonly description: string
}

/** OpenTelemetry's default explicit bucket boundaries (for histograms that give none). */
export const DEFAULT_BOUNDARIES: ReadonlyArray<number> = [
  0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000
]

const make = (kind: InstrumentKind) => (name: string, describe: Describe): Instrument => ({
  name,
  kind,
  unit: describe.unit,
  description: describe.description
})

/** A monotonic sum: each recording adds a non-negative increment. */
export const counter = make("counter")

/** A non-monotonic sum: each recording adds an increment of either sign (e.g. connections open now). */
export const upDownCounter = make("upDownCounter")

/** The last value recorded per attribute set. */
export const gauge = make("gauge")

/** A distribution of recorded values in explicit buckets. */
export const histogram = (
  name: string,
  describe: Describe & { readonly boundaries?: ReadonlyArray<number> }
): Instrument => {
  const boundaries = describe.boundaries ?? DEFAULT_BOUNDARIES
  for (let i = 1; i < boundaries.length; i++) {
    if (!(boundaries[i]! > boundaries[i - 1]!)) {
      throw new Error(`histogram ${name}: bucket boundaries must be strictly ascending`)
    }
  }
  return { name, kind: "histogram", unit: describe.unit, description: describe.description, boundaries }
}

/** The instruments of a probe, by the key its `signals` records with. */
export type Instruments = Readonly<Record<string, Instrument>>
