/**
 * The capabilities a probe can have. A probe's service value bundles the ones it has; the kind of probe decides
 * which, in its type: every probe has a `Loader` and an `Attacher`; an instrument probe also has a `Runner` (it emits
 * telemetry) and `Tracing` (it receives the sampler); a daemon probe has neither.
 */
import type { Effect, Scope } from "effect"
import type { BpfObject, ConstantValue, Link, MapRef } from "../kernel/Bpf.ts"
import type { Applicability } from "./Manifest.ts"
import type { ProbeAttachError, ProbeLoadError } from "./ProbeError.ts"
import type { Target } from "./Target.ts"
import type { TelemetrySink } from "./Telemetry.ts"
import type { Sampler } from "./TracingConfig.ts"

/** The probe's BPF object, loaded once with its constants, closed when the probe's layer closes. */
export interface Loaded {
  readonly object: BpfObject
  readonly constants: Readonly<Record<string, ConstantValue>>
  /** Maps taken from other probes, by this object's map name. */
  readonly reusedMaps: Readonly<Record<string, MapRef>>
  /** The probe's layouts and the C structs they mirror; `checked` is false when the object had no BTF to check. */
  readonly layouts: ReadonlyArray<LayoutCheck>
}

/** One layout of a probe compared with its C struct at load (a mismatch fails the load). */
export interface LayoutCheck {
  readonly role: "record" | "perTarget"
  readonly struct: string
  readonly checked: boolean
}

/** Where a probe's object is: not loaded yet (it loads on first use), loading, loaded, or failed to load. */
export type LoadStatus = "unloaded" | "loading" | "loaded" | "failed"

/**
 * Loader: puts the probe's object into the kernel, once. Under the default `Probe.LoadPolicy` ("eager") that happens
 * while the probe's layer is built; under "onAttach" (the agent's) on the first `load`: the Manager's, before the
 * probe's first attach, or a dependent's, whose load needs this probe's shared maps. Every caller shares the one
 * load, and its failure: a load that failed is not retried for each new process. The object stays in the layer's
 * scope whoever loaded it.
 */
export interface Loader {
  readonly load: Effect.Effect<Loaded, ProbeLoadError>
  readonly status: Effect.Effect<LoadStatus>
}

/** How the Manager attaches a probe others depend on. */
export interface AttachOptions {
  /**
   * The features (`SymbolSpec.feature`) the probes attached to this process use: symbols of other features are left
   * out. Undefined: every symbol.
   */
  readonly features?: ReadonlySet<string>
}

/** The programs of one probe attached to one process; detached when the scope `attach` ran in closes. */
export interface Attachment {
  readonly probe: string
  readonly pid: number
  readonly symbols: ReadonlyArray<string>
  readonly missingOptional: ReadonlyArray<string>
  readonly links: ReadonlyArray<Link>
}

/**
 * Attacher: attaches the loaded programs to one target. One loaded probe serves many targets; closing one
 * attachment's scope leaves the others. Per-target values (struct offsets) go into the per-pid map before the
 * links are made, and are deleted when the target goes. Links are per file when the target's `selection` is
 * "executable" (shared by its processes, made by the first, closed after the last has gone and a grace has passed)
 * and per process otherwise; either way their kernel work runs off the JS thread.
 */
export interface Attacher {
  /** Whether (and why not) the probe applies to a target: pure, no kernel. */
  readonly applicability: (target: Target) => Applicability
  /**
   * Attach to the target, loading the object first if it is not (`Loader`); on failure or interruption, whatever was
   * attached is detached before returning.
   */
  readonly attach: (
    target: Target,
    options?: AttachOptions
  ) => Effect.Effect<Attachment, ProbeAttachError | ProbeLoadError, Scope.Scope>
}

/** Consumer-side counters of a Runner. */
export interface RunnerStats {
  /** Records decoded into signals (spans, logs, measurements) and emitted. */
  readonly records: number
  /** Records the decoder rejected. */
  readonly decodeErrors: number
  /** Records decoded fine that the probe chose not to turn into any signal. */
  readonly skipped: number
  /** Records lost because the probe's `signals` recorded what it did not declare, or threw. */
  readonly signalErrors: number
  /** Logs and measurements the sink could not take (a sink without `logs` or `measurements`). */
  readonly unsupported: number
  /** Records the consumer dropped (the ring-buffer subscription's own counter). */
  readonly consumerDropped: number
}

/**
 * Runner: reads the probe's ring buffer, decodes each record, emits its signals. Runs until interrupted or stopped;
 * a probe not loaded yet has no ring: its Runner waits for the load (and `stop` then just ends it).
 */
export interface Runner {
  readonly run: Effect.Effect<void, never, TelemetrySink>
  readonly stats: Effect.Effect<RunnerStats>
  /**
   * Stop reading: take what the ring still holds, emit it, and let `run` finish. Call it after the producers are
   * detached so the last records are not lost; a no-op when `run` is not running.
   */
  readonly stop: Effect.Effect<void>
}

/** Tracing: the sampler this probe was loaded with (pushed into its BPF side). */
export interface Tracing {
  readonly sampler: Sampler
}

/** Kernel-side counters from the object's `ps_stats` per-CPU array, summed over CPUs. */
export interface KernelStats {
  readonly submitted: bigint
  readonly dropped: bigint
}
