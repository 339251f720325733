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

/** The probe's BPF object could not be opened or loaded, or a map it shares from another probe is unavailable. */
export class ProbeLoadError extends Schema.TaggedError<ProbeLoadError>()("ProbeLoadError", {
  probe: Schema.String,
  /** The kernel binding's error tag, e.g. "BpfLoadError". */
  reason: Schema.String,
  message: Schema.String,
  /** The verifier log's tail when the kernel rejected a program, else "". */
  verifierLog: Schema.String
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
