/**
 * Errors of the probe API. Each names the probe; config errors also name the field, attach errors the process.
 */
import { Schema } from "effect"

/** A probe-specific config value failed its Schema. `field` is the dotted path ("" for the whole config). */
export class ProbeConfigError extends Schema.TaggedError<ProbeConfigError>()("ProbeConfigError", {
  probe: Schema.String,
  field: Schema.String,
  message: Schema.String
}) {}

/**
 * A layout the probe decodes records with (or writes per-target values with) disagrees with the C struct of its
 * object's BTF, or names a struct the BTF does not have. `field` is the layout's field or the C member ("" for the
 * struct's size or its absence).
 */
export class LayoutMismatch extends Schema.TaggedError<LayoutMismatch>()("LayoutMismatch", {
  /** "record" (ring-buffer records) or "perTarget" (the per-pid map's value). */
  role: Schema.Literals(["record", "perTarget"]),
  struct: Schema.String,
  field: Schema.String,
  message: Schema.String
}) {}

/** The probe's BPF object could not be opened or loaded, or a map it shares from another probe is unavailable. */
export class ProbeLoadError extends Schema.TaggedError<ProbeLoadError>()("ProbeLoadError", {
  probe: Schema.String,
  /** The kernel binding's error tag, e.g. "BpfLoadError", or "LayoutMismatch". */
  reason: Schema.String,
  message: Schema.String,
  /** The verifier log's tail when the kernel rejected a program, else "". */
  verifierLog: Schema.String,
  /** What went wrong underneath, when it is not in the message alone: the layout mismatch. */
  cause: Schema.optional(LayoutMismatch)
}) {}

/**
 * Two probes with one name were composed (two definitions sharing a name, or one definition built twice, e.g. its
 * `layer` and a `layerWith(config)`): both would load and only one be attached, so the composition is refused.
 */
export class DuplicateProbeError extends Schema.TaggedError<DuplicateProbeError>()("DuplicateProbeError", {
  probe: Schema.String,
  message: Schema.String
}) {}

/** The probe could not be attached to one process (or does not apply to it). */
export class ProbeAttachError extends Schema.TaggedError<ProbeAttachError>()("ProbeAttachError", {
  probe: Schema.String,
  pid: Schema.Number,
  /** The kernel binding's error tag, or "NotApplicable". */
  reason: Schema.String,
  message: Schema.String
}) {}

/** Any error a probe layer fails with while being built. */
export type ProbeBuildError = ProbeConfigError | ProbeLoadError

/**
 * A probe's `signals` recorded something its declaration does not allow: a metric into an instrument it did not
 * declare (`UndeclaredInstrument`), or a value the instrument cannot take (`InvalidValue`: not finite, or negative
 * for a counter). In tests (`definition.signals`) this fails the effect; in a running agent the record is counted
 * in the Runner's `signalErrors` and logged, never silently dropped.
 */
export class ProbeSignalError extends Schema.TaggedError<ProbeSignalError>()("ProbeSignalError", {
  probe: Schema.String,
  instrument: Schema.String,
  reason: Schema.Literals(["UndeclaredInstrument", "InvalidValue"]),
  message: Schema.String
}) {}
