/**
 * What the Manager consumes: processes appearing (already analysed into a `Target`) and exiting.
 */
import { Context, Data, Layer, Stream } from "effect"
import type { Target } from "../probe/Target.ts"

/** A process event. */
export type TargetEvent = Data.TaggedEnum<{
  /** A Go process to instrument, analysed. */
  Started: { readonly target: Target }
  /** A process exited (or should no longer be instrumented). */
  Exited: { readonly pid: number }
}>

/** Constructors and matchers for `TargetEvent`. */
export const TargetEvent = Data.taggedEnum<TargetEvent>()

/** The stream of target events the Manager follows (process discovery feeds it). */
export class TargetSource extends Context.Service<TargetSource, {
  readonly events: Stream.Stream<TargetEvent>
}>()("probescope/manager/TargetSource") {}

/** A source from a given stream. */
export const layer = (events: Stream.Stream<TargetEvent>): Layer.Layer<TargetSource> =>
  Layer.succeed(TargetSource, TargetSource.of({ events }))

/** A source that never emits: the Manager is then driven by `Manager.handle`. */
export const layerEmpty: Layer.Layer<TargetSource> = layer(Stream.never)
