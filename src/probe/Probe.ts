/**
 * Defining probes. `Probe.instrument` and `Probe.daemon` turn what is specific to a probe — its BPF object, manifest,
 * config schema, constants, per-target values and (for instruments) record decoder — into a probe definition that
 * carries its own service tag and layer. Several probes compose as layers: a probe's layer provides its own tag (and
 * those of the probes it depends on), and the Manager composes every probe in the context it is given.
 *
 * - An **instrument** probe emits telemetry: it has a Runner and receives the sampler (TracingConfig).
 * - A **daemon** probe emits nothing: e.g. it owns a map other probes reuse, or watches tracepoints. It has no
 *   Runner and never sees TracingConfig.
 *
 * Per-target values: one loaded object serves every process, while struct offsets may differ per process (Go and
 * library versions). A probe with `perTarget` gets a per-pid hash map (`ps_targets` by default, key: u32 pid, value:
 * the encoded struct) written before its uprobes attach to a process and deleted after they detach; the BPF side
 * looks up its tgid there.
 */
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Context, Effect, Exit, Layer, Option, Schema, Scope, SchemaIssue } from "effect"
import type { BpfError, BpfObject, ConstantValue, MapRef } from "../kernel/Bpf.ts"
import { Bpf, BpfMapError } from "../kernel/Bpf.ts"
import * as Binary from "./Binary.ts"
import { pidKey } from "./Binary.ts"
import type { Attacher, KernelStats, LayoutCheck, Loaded, Loader, Runner, Tracing } from "./Capabilities.ts"
import { attachCgroups, Cgroup2Root, LinkGrace, makeAttacher, withoutPrograms } from "./internal/attacher.ts"
import type { LoadedState } from "./internal/loader.ts"
import { deferredRunner, loadOnce, loadsAtBuild } from "./internal/loader.ts"
import { makeCollector, makeRunner, signalsOf } from "./internal/runner.ts"
import type { Instruments } from "./Instruments.ts"
import type { FieldSpecs, Manifest, Offsets } from "./Manifest.ts"
import * as ManifestM from "./Manifest.ts"
import { LayoutMismatch, ProbeConfigError, ProbeLoadError, ProbeSignalError } from "./ProbeError.ts"
import type { Target } from "./Target.ts"
import type { Attributes, LogData, Signals, SpanData } from "./Telemetry.ts"
import * as TracingConfigM from "./TracingConfig.ts"
import type { Sampler } from "./TracingConfig.ts"
import { TracingConfig } from "./TracingConfig.ts"

export { Cgroup2Root, fileKey, LinkGrace } from "./internal/attacher.ts"

// ---------------------------------------------------------------------------------------------------------------
// Identity and handles
// ---------------------------------------------------------------------------------------------------------------

/** The service identifier of one probe: each probe is its own service, so several compose without clashing. */
export interface ProbeId<Name extends string> {
  readonly _ProbeId: Name
}

/** What every loaded probe has. */
export interface ProbeBase<Name extends string, Config, Shares extends string> {
  readonly name: Name
  readonly manifest: Manifest
  readonly config: Config
  /**
   * The probes whose maps this one reuses (`reuseMaps`) or whose features it uses (`uses`), by name. The Manager
   * attaches them to a process before this one, and attaches a daemon only where a probe depending on it attaches.
   */
  readonly dependsOn: ReadonlyArray<string>
  /** The features of other probes it needs where it attaches (`uses`): the Manager attaches their symbols there. */
  readonly uses: ReadonlyArray<{ readonly probe: string; readonly feature: string }>
  /** Loader capability: the object, loaded at build or on first use (`LoadPolicy`). */
  readonly loader: Loader
  /** Attacher capability. */
  readonly attacher: Attacher
  /**
   * A map this probe shares with others (declared in `shares`), for their `reuseMaps`; loads the probe if it is not
   * (a `ProbeLoadError` when that fails).
   */
  mapRef(map: Shares): Effect.Effect<MapRef, BpfMapError | ProbeLoadError>
  /** Counters from the object's `ps_stats` map. */
  readonly kernelStats: Effect.Effect<KernelStats, BpfMapError>
}

/** A loaded instrument probe: it runs and traces. */
export interface InstrumentProbe<Name extends string = string, Config = unknown, Shares extends string = string>
  extends ProbeBase<Name, Config, Shares>
{
  readonly kind: "instrument"
  readonly runner: Runner
  readonly tracing: Tracing
}

/** A loaded daemon probe: no telemetry, so no Runner and no Tracing. */
export interface DaemonProbe<Name extends string = string, Config = unknown, Shares extends string = string>
  extends ProbeBase<Name, Config, Shares>
{
  readonly kind: "daemon"
}

/** Any loaded probe, as the registry and the Manager see it. */
export type AnyProbe = InstrumentProbe<string, unknown, string> | DaemonProbe<string, unknown, string>

/** Whether a loaded probe can run (has a Runner). */
export const isInstrument = (probe: AnyProbe): probe is InstrumentProbe => probe.kind === "instrument"

// ---------------------------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------------------------

/** A map of probe `P` that other probes may reuse. */
export interface SharedMap<Name extends string = string, M extends string = string, R = unknown> {
  readonly _tag: "SharedMap"
  readonly probe: {
    readonly name: Name
    readonly tag: Context.Key<ProbeId<Name>, ProbeBase<Name, unknown, M>>
    readonly layer: Layer.Layer<ProbeId<Name>, ProbeBuildErrorOf, R>
  }
  readonly map: M
}

type ProbeBuildErrorOf = ProbeConfigError | ProbeLoadError

/** A feature of probe `P` (symbols its manifest marks with `feature`) that another probe `uses`. */
export interface Feature<Name extends string = string> {
  readonly _tag: "Feature"
  readonly probe: SharedMap<Name>["probe"]
  readonly feature: string
}

/** A probe definition: its identity, its service tag, and the layer that loads it. */
export interface Definition<
  Name extends string,
  Handle extends ProbeBase<Name, any, Shares>,
  ConfigInput,
  Shares extends string,
  R
> {
  readonly name: Name
  readonly kind: Handle extends InstrumentProbe ? "instrument" : "daemon"
  readonly manifest: Manifest
  /** The probes whose maps this one reuses, or whose features it uses, by name. */
  readonly dependsOn: ReadonlyArray<string>
  /** The features of other probes it uses (`uses`). */
  readonly uses: ReadonlyArray<{ readonly probe: string; readonly feature: string }>
  /** The probe's own service. */
  readonly tag: Context.Service<ProbeId<Name>, Handle>
  /**
   * Loads the probe with its config from `ProbeSettings` (or the schema's defaults). Provides its tag and those of
   * the probes it depends on (built here unless already provided to it).
   */
  readonly layer: Layer.Layer<ProbeId<Name>, ProbeConfigError | ProbeLoadError, R>
  /**
   * Same, with an explicit config. Each call is a distinct layer: a probe others depend on should be configured
   * through `ProbeSettings` so every dependent shares one instance.
   */
  readonly layerWith: (config: ConfigInput) => Layer.Layer<ProbeId<Name>, ProbeConfigError | ProbeLoadError, R>
  /** Reference one of the maps this probe shares, for another probe's `reuseMaps`. */
  readonly map: <M extends Shares>(map: M) => SharedMap<Name, M, R>
  /** Reference one of the features its manifest's symbols declare, for another probe's `uses`. */
  readonly feature: (feature: string) => Feature<Name>
}

/** An instrument probe's definition: also decodes records without a kernel (for tests and tools). */
export interface InstrumentDefinition<Name extends string, Config, ConfigInput, Shares extends string, R>
  extends Definition<Name, InstrumentProbe<Name, Config, Shares>, ConfigInput, Shares, R>
{
  /** The metric instruments the probe declares (what it may record into). */
  readonly instruments: Instruments
  /**
   * Everything one ring-buffer record turns into, as the Runner would emit it. Recording into an undeclared
   * instrument, or a value it cannot take, fails with `ProbeSignalError`.
   */
  readonly signals: (
    record: Uint8Array,
    config?: ConfigInput
  ) => Effect.Effect<Signals, ProbeConfigError | Schema.SchemaError | ProbeSignalError>
  /** The first span one record turns into, or undefined (a shorthand of `signals` for span probes). */
  readonly decode: (
    record: Uint8Array,
    config?: ConfigInput
  ) => Effect.Effect<SpanData | undefined, ProbeConfigError | Schema.SchemaError | ProbeSignalError>
}

/** Probe-specific config input by probe name (e.g. from the agent's config file); absent means defaults. */
export const ProbeSettings = Context.Reference<Readonly<Record<string, unknown>>>("probescope/probe/ProbeSettings", {
  defaultValue: () => ({})
})

/** Provide probe settings by probe name. */
export const settings = (values: Readonly<Record<string, unknown>>): Layer.Layer<never> =>
  Layer.succeed(ProbeSettings, values)

/**
 * When a probe's object goes into the kernel:
 * - "eager" (the default): while its layer is built, so a verifier rejection or a missing object fails the build;
 * - "onAttach": on first use — the Manager loads the probes a process needs, side by side, just before attaching
 *   them, and a dependent's load loads the probes whose maps it reuses. A probe no target needs costs nothing: no
 *   verification, no ring, no memory. A load failure is then the attach's failure, logged and counted per process.
 *
 * Probes that attach when they load (global tracepoints, cgroup programs) or name no library (tracepoint instruments)
 * load at build either way. The agent uses "onAttach" (`PROBESCOPE_PROBE_LOAD`).
 */
export const LoadPolicy = Context.Reference<"eager" | "onAttach">("probescope/probe/LoadPolicy", {
  defaultValue: () => "eager"
})

/** Provide the probes' load policy (see `LoadPolicy`). */
export const loadPolicy = (policy: "eager" | "onAttach"): Layer.Layer<never> => Layer.succeed(LoadPolicy, policy)

/** What `constants` and `perTarget` see at load. */
export interface LoadContext<Config> {
  readonly config: Config
}

/** What an instrument's `constants` sees: also the sampler. */
export interface TracingLoadContext<Config> extends LoadContext<Config> {
  readonly sampler: Sampler
}

/** What a per-target value is computed from. */
export interface TargetContext<Config, F extends FieldSpecs> {
  readonly target: Target
  readonly offsets: Offsets<F>
  readonly config: Config
}

/** Per-target values written to a per-pid map on attach. */
export interface PerTarget<Config, F extends FieldSpecs, T> {
  /** Hash map keyed by u32 pid (default "ps_targets"). */
  readonly map?: string
  readonly layout: Binary.Layout<T>
  readonly value: (ctx: TargetContext<Config, F>) => T
}

/** A span as a probe builds it; the framework fills in `probe`. */
export type SpanInput = Omit<SpanData, "probe">

/** A log record as a probe builds it; the framework fills in `probe`. */
export type LogInput = Omit<LogData, "probe">

/**
 * What a probe's `signals` emits one record's telemetry through. `metric` takes the key of an instrument the probe
 * declared (`instruments`), so recording into anything else does not type-check (and is a `ProbeSignalError` at run
 * time); `pid` selects the process resource, absent for a host-wide measurement.
 */
export interface Emit<K extends string> {
  readonly span: (span: SpanInput) => void
  readonly log: (log: LogInput) => void
  readonly metric: (instrument: K, value: number, attributes?: Attributes, pid?: number) => void
}

/** What every probe declares. */
export interface CommonOptions<
  Name extends string,
  F extends FieldSpecs,
  Config,
  ConfigInput,
  Shares extends string,
  T,
  Deps extends SharedMap<any, any, any>
> {
  readonly name: Name
  /**
   * The compiled object: a path, a `file:` URL (`new URL("./my_probe.bpf.o", import.meta.url)`, beside the module
   * that defines the probe), or a built-in's bare name ("nethttp_server": `Probe.objectFile(name)`, resolved when the
   * probe loads, so that `PROBESCOPE_BPF_DIR` is read then and not at import).
   */
  readonly object: string | URL
  readonly manifest: Manifest<F>
  /** Probe-specific config; decoded from `ProbeSettings[name]` (default `{}`), so give fields defaults. */
  readonly config?: Schema.Codec<Config, ConfigInput>
  /** Maps other probes may reuse (their names in this object). */
  readonly shares?: ReadonlyArray<Shares>
  /** Maps taken from other probes, by this object's map name: `{ go_spans: GoContext.map("go_spans") }`. */
  readonly reuseMaps?: Readonly<Record<string, Deps>>
  /**
   * Features of other probes this one needs in each process it attaches to (`GoContext.goroutines`: a span started
   * in one goroutine is the parent of work in goroutines it starts). A feature no attached probe uses is not attached.
   * A function chooses them by the probe's config; their probes must then be ones it reuses maps of.
   */
  readonly uses?: ReadonlyArray<Feature<any>> | ((ctx: LoadContext<Config>) => ReadonlyArray<Feature<any>>)
  readonly perTarget?: PerTarget<Config, F, T>
  /** Programs not to load, e.g. a variant the kernel forbids. */
  readonly disablePrograms?: (ctx: LoadContext<Config>) => ReadonlyArray<string>
  /**
   * The cgroup v2 directory a global manifest's `cgroups` programs are attached to; undefined (or absent): the cgroup
   * v2 mount's root, so every socket of the host.
   */
  readonly cgroup?: (ctx: LoadContext<Config>) => string | undefined
}

/** Options of `Probe.instrument`. */
export interface InstrumentOptions<
  Name extends string,
  F extends FieldSpecs,
  Config,
  ConfigInput,
  Shares extends string,
  T,
  Deps extends SharedMap<any, any, any>,
  Rec,
  I extends Instruments = {}
> extends CommonOptions<Name, F, Config, ConfigInput, Shares, T, Deps> {
  /** `.rodata` constants; the sampler's (`ps_sampler_*`) are added unless `sampling` is "none". */
  readonly constants?: (ctx: TracingLoadContext<Config>) => Readonly<Record<string, ConstantValue>>
  /** "rodata" (default): the object declares the `ps_sampler_*` constants. "none": the probe ignores sampling. */
  readonly sampling?: "rodata" | "none"
  /**
   * The ring buffer (default map "events"): `bytes` sizes it in the kernel (a power of two, at least 4096; default
   * the agent's `PROBESCOPE_RINGBUF_BYTES`, else the C file's), `capacity` the records waiting in user space.
   */
  readonly ringBuffer?: { readonly map?: string; readonly capacity?: number; readonly bytes?: number }
  /** Decodes one ring-buffer record; usually `Binary.schema(Binary.struct({...}))`. */
  readonly record: Schema.Codec<Rec, Uint8Array>
  /** The metric instruments `signals` records into, by the key it uses (`Instruments.histogram(...)`, ...). */
  readonly instruments?: I
  /** Builds the span from a decoded record; undefined skips the record. Give this or `signals`. */
  readonly span?: (record: Rec, ctx: LoadContext<Config>) => SpanInput | undefined
  /**
   * Turns a decoded record into any signals: spans, log records, measurements into the declared `instruments`. Give
   * this or `span`; emitting nothing skips the record.
   */
  readonly signals?: (record: Rec, emit: Emit<Extract<keyof I, string>>, ctx: LoadContext<Config>) => void
}

/** Options of `Probe.daemon`. */
export interface DaemonOptions<
  Name extends string,
  F extends FieldSpecs,
  Config,
  ConfigInput,
  Shares extends string,
  T,
  Deps extends SharedMap<any, any, any>
> extends CommonOptions<Name, F, Config, ConfigInput, Shares, T, Deps> {
  readonly constants?: (ctx: LoadContext<Config>) => Readonly<Record<string, ConstantValue>>
}

type DepR<D> = D extends SharedMap<string, string, infer R> ? R : never

const repoRoot = new URL("../../", import.meta.url)

/**
 * Where a probe's compiled object is:
 * - a `file:` URL (`new URL("./my_probe.bpf.o", import.meta.url)`, or its string) or a path (absolute, or relative to
 *   the working directory; anything with a "/" or ending in ".o"): that file;
 * - a built-in's name ("nethttp_server"): bpf/out/<name>.bpf.o, or <PROBESCOPE_BPF_DIR>/<name>.bpf.o when set.
 */
export const objectFile = (nameOrPath: string | URL): string => {
  if (nameOrPath instanceof URL || nameOrPath.startsWith("file:")) return fileURLToPath(nameOrPath)
  if (nameOrPath.includes("/") || nameOrPath.endsWith(".o")) return path.resolve(nameOrPath)
  const dir = process.env["PROBESCOPE_BPF_DIR"]
  return dir !== undefined && dir !== "" ?
    `${dir.replace(/\/$/, "")}/${nameOrPath}.bpf.o` :
    new URL(`bpf/out/${nameOrPath}.bpf.o`, repoRoot).pathname
}

// ---------------------------------------------------------------------------------------------------------------
// Instances: how the Manager finds the probes it is given
// ---------------------------------------------------------------------------------------------------------------

/**
 * Besides its own tag, every built probe is provided under a key of its own instance. A context holds one value per
 * key, so two probes sharing a name (or one definition built twice) would hide each other behind the one tag; under
 * their instance keys both stay visible, and the Manager refuses the composition instead of loading both and
 * attaching one.
 */
const INSTANCE_PREFIX = "probescope/probe/instance/"
let nextInstance = 0

/** A context holding `probe` under its tag and a fresh instance key. */
export const probeContext = <Name extends string>(
  tag: Context.Key<ProbeId<Name>, any>,
  probe: AnyProbe
): Context.Context<ProbeId<Name>> =>
  Context.make(tag, probe).pipe(
    Context.add(Context.Service<never, AnyProbe>(`${INSTANCE_PREFIX}${probe.name}#${nextInstance++}`), probe)
  ) as Context.Context<ProbeId<Name>>

/** Every probe instance in a context, in no particular order: what the Manager composes. */
export const instancesIn = (context: Context.Context<never>): ReadonlyArray<AnyProbe> =>
  [...context.mapUnsafe].flatMap(([key, value]) => key.startsWith(INSTANCE_PREFIX) ? [value as AnyProbe] : [])

/** The entries of `context` that provide `probe` (its tag and instance key), to pass a provided probe on. */
const entriesOf = (context: Context.Context<never>, probe: unknown): Context.Context<never> =>
  Context.makeUnsafe(new Map([...context.mapUnsafe].filter(([, value]) => value === probe)))

/** Define an instrument probe: loaded once, attached per target, its Runner emitting spans. */
export const instrument = <
  const Name extends string,
  const F extends FieldSpecs = {},
  Config = {},
  ConfigInput = {},
  const Shares extends string = never,
  T = never,
  Deps extends SharedMap<any, any, any> = never,
  Rec = unknown,
  const I extends Instruments = {}
>(
  options: InstrumentOptions<Name, F, Config, ConfigInput, Shares, T, Deps, Rec, I>
): InstrumentDefinition<Name, Config, ConfigInput, Shares, Bpf | TracingConfig | DepR<Deps>> =>
  define("instrument", options as never) as any

/** Define a daemon probe: loaded once, attached per target (when it names a library), no telemetry. */
export const daemon = <
  const Name extends string,
  const F extends FieldSpecs = {},
  Config = {},
  ConfigInput = {},
  const Shares extends string = never,
  T = never,
  Deps extends SharedMap<any, any, any> = never
>(
  options: DaemonOptions<Name, F, Config, ConfigInput, Shares, T, Deps>
): Definition<Name, DaemonProbe<Name, Config, Shares>, ConfigInput, Shares, Bpf | DepR<Deps>> =>
  define("daemon", options as never) as any

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

const EmptyConfig = Schema.Struct({})

const issuePath = (issue: SchemaIssue.Issue): { field: string; message: string } => {
  const formatted = SchemaIssue.makeFormatterStandardSchemaV1()(issue)
  const first = formatted.issues[0]
  if (first === undefined) return { field: "", message: String(issue) }
  const field = (first.path ?? []).map((p) => String(typeof p === "object" && p !== null ? p.key : p)).join(".")
  return { field, message: first.message }
}

/** Decode a probe's config input; a bad value fails naming the probe and the field. */
export const decodeConfig = <C, I>(
  probe: string,
  schema: Schema.Codec<C, I>,
  input: unknown
): Effect.Effect<C, ProbeConfigError> => {
  const exit = Schema.decodeUnknownExit(schema as Schema.Codec<C, I, never, never>)(input ?? {})
  if (Exit.isSuccess(exit)) return Effect.succeed(exit.value)
  const err = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (err === undefined || err._tag !== "Fail") return Effect.die(exit.cause)
  const { field, message } = issuePath(err.error.issue)
  return Effect.fail(
    new ProbeConfigError({
      probe,
      field,
      message: `probe ${probe}: config${field === "" ? "" : ` field "${field}"`}: ${message}`
    })
  )
}

const loadError = (probe: string) => (e: BpfError): ProbeLoadError =>
  new ProbeLoadError({
    probe,
    reason: e._tag,
    message: `probe ${probe}: ${e.message}`,
    verifierLog: e._tag === "BpfLoadError" ? e.verifierLog : ""
  })

const sumPerCpu = (bytes: Uint8Array): bigint => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let total = 0n
  for (let o = 0; o + 8 <= bytes.length; o += 8) total += view.getBigUint64(o, true)
  return total
}

const u32Key = (n: number): Uint8Array => pidKey(n)

type AnyOptions =
  & CommonOptions<string, FieldSpecs, unknown, unknown, string, unknown, SharedMap<string, string, unknown>>
  & Partial<Pick<InstrumentOptions<string, FieldSpecs, unknown, unknown, string, unknown, any, unknown, Instruments>,
    "sampling" | "ringBuffer" | "record" | "span" | "signals" | "instruments">>
  & { readonly constants?: (ctx: TracingLoadContext<unknown>) => Readonly<Record<string, ConstantValue>> }

const define = (kind: "instrument" | "daemon", options: AnyOptions) => {
  const name = options.name
  const problems = [...ManifestM.validate(options.manifest)]
  if (kind === "instrument" && (options.span === undefined) === (options.signals === undefined)) {
    problems.push("an instrument probe gives exactly one of `span` and `signals`")
  }
  const instruments: Instruments = options.instruments ?? {}
  const names = new Set<string>()
  for (const i of Object.values(instruments)) {
    if (names.has(i.name)) problems.push(`instrument ${i.name} is declared twice`)
    names.add(i.name)
  }
  if (problems.length > 0) throw new Error(`probe ${name}: invalid manifest: ${problems.join("; ")}`)
  const tag = Context.Service<ProbeId<string>, AnyProbe>(`probescope/probe/${name}`)
  // Resolved when the probe loads, not when it is defined (at import): a built-in's name becomes a path only then,
  // so PROBESCOPE_BPF_DIR is read at run time (a start-up snapshot keeps nothing read at import). A URL (or its
  // string) is made a path: the kernel binding opens paths.
  const objectPath = (): string => {
    const object = options.object
    if (object instanceof URL || object.startsWith("file:")) return fileURLToPath(object)
    // A bare name ("nethttp_server") is a built-in's object; anything else is a path, opened as given.
    return /^\w+$/.test(object) ? objectFile(object) : object
  }
  const configSchema = (options.config ?? EmptyConfig) as Schema.Codec<unknown, unknown>
  const staticUses = typeof options.uses === "function" ? [] : options.uses ?? []
  const deps = [...Object.values(options.reuseMaps ?? {}), ...staticUses]
  const depProbes = [...new Map(deps.map((d) => [d.probe.tag.key, d.probe])).values()]
  const dependsOn = [...new Set(deps.map((d) => d.probe.name))]
  const usesOf = (features: ReadonlyArray<Feature>) =>
    features.map((f) => ({ probe: f.probe.name, feature: f.feature }))
  const uses = usesOf(staticUses)
  const features = new Set((options.manifest.symbols ?? []).flatMap((s) => s.feature === undefined ? [] : [s.feature]))

  const make = (input: Effect.Effect<unknown>) =>
    Effect.gen(function*() {
      const config = yield* decodeConfig(name, configSchema, yield* input)
      const sampler = kind === "instrument" ? (yield* TracingConfig).sampler : TracingConfigM.defaultSampler
      const disablePrograms = options.disablePrograms?.({ config }) ?? []
      const manifest = withoutPrograms(options.manifest, disablePrograms)
      const scope = yield* Scope.Scope
      // The load may run long after the build (on first attach): it gets the build's services, the layer's scope
      // among them, so the object and its global attachments close with the layer whoever loaded it.
      const context = yield* Effect.context<never>()
      const onAttach = (yield* LoadPolicy) === "onAttach" && !loadsAtBuild(manifest)
      // Features chosen by config: only of probes it already depends on (their layers are built with it).
      const usesNow = typeof options.uses === "function" ? usesOf(options.uses({ config })) : uses
      const stranger = usesNow.find((u) => !dependsOn.includes(u.probe))
      if (stranger !== undefined) {
        return yield* Effect.die(
          new Error(`probe ${name} uses a feature of ${stranger.probe}, which it does not reuse a map of`)
        )
      }

      /** The object into the kernel, then what needs it: layouts checked, global attachments, Attacher, Runner. */
      const loadNow = Effect.gen(function*() {
        const bpf = yield* Bpf
        const reusedMaps: Record<string, MapRef> = {}
        for (const [mine, shared] of Object.entries(options.reuseMaps ?? {})) {
          const owner = yield* shared.probe.tag
          reusedMaps[mine] = yield* owner.mapRef(shared.map).pipe(
            Effect.mapError((e) =>
              e._tag === "ProbeLoadError" ?
                new ProbeLoadError({
                  probe: name,
                  reason: "DependencyNotLoaded",
                  message:
                    `probe ${name}: probe ${shared.probe.name}, whose maps it reuses, did not load: ${e.message}`,
                  verifierLog: e.verifierLog
                }) :
                loadError(name)(e)
            )
          )
        }
        const constants: Record<string, ConstantValue> = {
          ...(kind === "instrument" && options.sampling !== "none" ? TracingConfigM.constants(sampler) : {}),
          ...(options.constants?.({ config, sampler }) ?? {})
        }
        const ring = kind === "instrument" ? options.ringBuffer : undefined
        const file = objectPath()
        const object = yield* bpf.load({
          file,
          name,
          constants,
          reuseMaps: reusedMaps,
          disablePrograms,
          ...(ring?.bytes === undefined ? {} : { mapSizes: { [ring.map ?? "events"]: ring.bytes } }),
          uprobeMulti: true
        }).pipe(Effect.mapError(loadError(name)))
        const layouts = yield* checkLayouts(name, kind, options, object, file)
        // A tracepoint instrument's (`processes: "any"`) are its Attacher's: attached while it has targets.
        for (const tp of ManifestM.isTracepointInstrument(options.manifest) ? [] : options.manifest.tracepoints ?? []) {
          yield* object.attachTracepoint(tp).pipe(Effect.mapError(loadError(name)))
        }
        // A global probe's cgroup programs: attached once, in the probe's scope (detached when it closes).
        const cgroupPrograms = manifest.cgroups ?? []
        if (cgroupPrograms.length > 0) {
          const cgroup = options.cgroup?.({ config }) ?? (yield* Cgroup2Root)()
          if (cgroup === undefined) {
            return yield* new ProbeLoadError({
              probe: name,
              reason: "NoCgroup2",
              message: `probe ${name}: cgroup v2 is not mounted (no cgroup2 in /proc/self/mountinfo): its cgroup ` +
                `programs (${cgroupPrograms.map((c) => c.program).join(", ")}) have nowhere to attach`,
              verifierLog: ""
            })
          }
          yield* attachCgroups(manifest, object, cgroup).pipe(Effect.mapError(loadError(name)))
        }
        const loaded: Loaded = { object, constants, reusedMaps, layouts }
        const attacher = makeAttacher(name, options as never, loaded, config, disablePrograms, scope, yield* LinkGrace)
        const runner = kind === "instrument" ? makeRunner(name, options as never, loaded, config) : undefined
        yield* Effect.logDebug(`probe ${name} loaded`)
        return { loaded, attacher, runner }
      }).pipe(Effect.provideContext(context as Context.Context<any>))

      const once = loadOnce(loadNow as Effect.Effect<LoadedState, ProbeLoadError>, scope)
      // Eager: the build waits for the load and fails with it.
      if (!onAttach) yield* once.now
      else yield* Effect.logDebug(`probe ${name}: loaded on its first attach`)

      const loader: Loader = { load: Effect.map(once.get, (s) => s.loaded), status: Effect.sync(once.status) }
      const attacher: Attacher = {
        // Before the load only the manifest can answer (a tracepoint the kernel lacks is known once loaded).
        applicability: (target) =>
          once.current()?.attacher.applicability(target) ?? ManifestM.check(name, manifest, target),
        attach: (target, attachOptions) => Effect.flatMap(once.get, (s) => s.attacher.attach(target, attachOptions))
      }
      const shares = new Set(options.shares ?? [])
      const base = {
        name,
        manifest: options.manifest as Manifest,
        config,
        dependsOn,
        uses: usesNow,
        loader,
        attacher,
        // A dependent asking for a shared map is a reason to load: its own load needs the map's fd.
        mapRef: (map: string) =>
          shares.has(map) ? Effect.flatMap(once.get, (s) => s.loaded.object.mapRef(map)) : Effect.fail(
            new BpfMapError({
              op: "mapRef",
              errno: 0,
              code: "ENOTSHARED",
              message: `probe ${name} does not share map ${map} (declare it in \`shares\`)`,
              map
            })
          ),
        kernelStats: Effect.suspend(() => {
          const loaded = once.current()?.loaded
          if (loaded === undefined) return Effect.succeed({ submitted: 0n, dropped: 0n })
          return Effect.gen(function*() {
            const submitted = yield* loaded.object.lookup("ps_stats", u32Key(0))
            const dropped = yield* loaded.object.lookup("ps_stats", u32Key(1))
            return {
              submitted: submitted._tag === "Some" ? sumPerCpu(submitted.value) : 0n,
              dropped: dropped._tag === "Some" ? sumPerCpu(dropped.value) : 0n
            }
          })
        })
      }
      const probe: AnyProbe = kind === "instrument" ?
        {
          ...base,
          kind: "instrument",
          runner: deferredRunner(once),
          tracing: { sampler }
        } :
        { ...base, kind: "daemon" }
      return probe
    })

  const build = (input: Effect.Effect<unknown>) => {
    const own = Layer.effectContext(Effect.map(
      make(input) as Effect.Effect<AnyProbe, ProbeConfigError | ProbeLoadError, any>,
      (probe) => probeContext(tag, probe)
    ))
    if (depProbes.length === 0) return own
    // A dependency already provided to this layer (configured with `layerWith`, or a mock) is used as it is; one that
    // is not is built from its default layer, which Effect memoizes by reference, so every dependent shares one.
    // Either way it is part of this layer's output: the Manager then sees it however the layers were composed.
    return Layer.unwrap(Effect.map(Effect.context<never>(), (context) => {
      const provided = depProbes.map((d) => {
        const existing = context.mapUnsafe.get(d.tag.key)
        return existing === undefined ? d.layer : Layer.succeedContext(entriesOf(context, existing))
      })
      return own.pipe(Layer.provideMerge(Layer.mergeAll(...(provided as [any, ...Array<any>]))))
    })) as Layer.Layer<ProbeId<string>, ProbeConfigError | ProbeLoadError, any>
  }

  const signalsFor = (record: Uint8Array, input: unknown) =>
    Effect.gen(function*() {
      const config = yield* decodeConfig(name, configSchema, input)
      const decoded = yield* Schema.decodeUnknownEffect(options.record! as Schema.Codec<unknown, Uint8Array>)(record)
      const collector = makeCollector(name, instruments)
      const toSignals = signalsOf(options as never)
      try {
        toSignals(decoded, collector.emit, { config })
      } catch (e) {
        // A declaration the probe broke is its typed error; anything else it throws is a bug (a defect).
        if (e instanceof ProbeSignalError) return yield* e
        throw e
      }
      return collector.take() as Signals
    })

  const definition = {
    name,
    kind,
    manifest: options.manifest,
    dependsOn,
    uses,
    tag,
    layer: build(Effect.map(ProbeSettings, (s) => s[name])),
    layerWith: (config: unknown) => build(Effect.succeed(config)),
    map: (map: string): SharedMap => ({ _tag: "SharedMap", probe: definition as never, map }),
    feature: (feature: string): Feature => {
      // A typo would silently attach nothing: a feature the manifest does not declare is a definition error.
      if (!features.has(feature)) throw new Error(`probe ${name} declares no feature ${feature}`)
      return { _tag: "Feature", probe: definition as never, feature }
    },
    instruments,
    signals: (record: Uint8Array, input?: unknown) => signalsFor(record, input),
    decode: (record: Uint8Array, input?: unknown) => Effect.map(signalsFor(record, input), (s) => s.spans[0])
  }
  return definition
}

/** The load error of a layout that disagrees with its C struct: the first disagreement, and how many more. */
const layoutError = (probe: string, object: string, mismatch: LayoutMismatch, more: number): ProbeLoadError =>
  new ProbeLoadError({
    probe,
    reason: "LayoutMismatch",
    message: `probe ${probe}: ${mismatch.role === "record" ? "record" : "per-target"} layout does not match struct ` +
      `${mismatch.struct} in the BTF of ${object}: ${mismatch.message}${more > 0 ? ` (and ${more} more)` : ""}`,
    verifierLog: "",
    cause: mismatch
  })

/**
 * Compare the probe's layouts with the C structs of its object's BTF: the record layout with the struct it names
 * (`Binary.struct(..., { struct })`), the per-target layout with the struct it names or, when it names none, the
 * value type of its per-pid map. An object without BTF (a fake-kernel object the test gave none) is not checked.
 */
const checkLayouts = (
  name: string,
  kind: "instrument" | "daemon",
  options: AnyOptions,
  object: BpfObject,
  objectPath: string
) =>
  Effect.gen(function*() {
    const record = kind === "instrument" && options.record !== undefined ? Binary.layoutOf(options.record) : undefined
    const perTargetLayout = options.perTarget?.layout as Binary.Layout<unknown> | undefined
    if (record === undefined && perTargetLayout === undefined) return []
    // Only the structs checked are read from the BTF (and every map's value struct, which names the per-target one
    // when its layout does not).
    const named = [record?.struct, perTargetLayout?.struct].filter((s): s is string => s !== undefined)
    let btf = yield* object.btf(named)
    const viaMap = perTargetLayout !== undefined && perTargetLayout.struct === undefined && Option.isSome(btf) ?
      btf.value.mapValues[options.perTarget?.map ?? "ps_targets"] :
      undefined
    if (viaMap !== undefined && !named.includes(viaMap)) btf = yield* object.btf([...named, viaMap])
    const out: Array<LayoutCheck> = []
    const check = (role: LayoutCheck["role"], layout: Binary.Layout<unknown>, struct: string) =>
      Effect.gen(function*() {
        if (Option.isNone(btf)) return void out.push({ role, struct, checked: false })
        const found = btf.value.structs[struct]
        const mismatches: ReadonlyArray<Binary.Mismatch> = found === undefined ?
          [{ field: "", message: `the BTF has no struct ${struct} (a record type only reserved by size needs ` +
            `PS_RECORD(${struct}) in the C file)` }] :
          Binary.check(layout, found)
        const first = mismatches[0]
        if (first !== undefined) {
          return yield* layoutError(
            name,
            path.basename(objectPath),
            new LayoutMismatch({ role, struct, field: first.field, message: first.message }),
            mismatches.length - 1
          )
        }
        out.push({ role, struct, checked: true })
      })
    if (record !== undefined) {
      // Nothing to check against (no BTF): nothing to say either.
      if (record.struct === undefined && Option.isNone(btf)) {
        out.push({ role: "record", struct: "", checked: false })
      } else if (record.struct === undefined) {
        yield* Effect.logWarning(
          `probe ${name}: its record layout names no C struct (Binary.struct(..., { struct })): not checked against BTF`
        )
      } else {
        yield* check("record", record, record.struct)
      }
    }
    if (options.perTarget !== undefined) {
      const map = options.perTarget.map ?? "ps_targets"
      const layout = options.perTarget.layout as Binary.Layout<unknown>
      const struct = layout.struct ?? (Option.isSome(btf) ? btf.value.mapValues[map] : undefined)
      if (struct !== undefined) {
        yield* check("perTarget", layout, struct)
      } else if (Option.isNone(btf)) {
        out.push({ role: "perTarget", struct: "", checked: false })
      } else {
        return yield* layoutError(
          name,
          path.basename(objectPath),
          new LayoutMismatch({
            role: "perTarget",
            struct: "",
            field: "",
            message: `map ${map} has no struct value type (declare it with __type(value, struct ...)), ` +
              "and the layout names none"
          }),
          0
        )
      }
    }
    return out
  })
