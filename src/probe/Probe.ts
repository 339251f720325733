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
import { Context, Deferred, Duration, Effect, Exit, Layer, Option, Schema, Scope, SchemaIssue, Stream } from "effect"
import type { BpfError, BpfObject, ConstantValue, Link, MapRef, RingBuffer } from "../kernel/Bpf.ts"
import { Bpf, BpfMapError } from "../kernel/Bpf.ts"
import * as Binary from "./Binary.ts"
import { pidKey } from "./Binary.ts"
import type {
  Attacher,
  Attachment,
  KernelStats,
  LayoutCheck,
  Loaded,
  Runner,
  RunnerStats,
  Tracing
} from "./Capabilities.ts"
import type { FieldSpecs, Manifest, Offsets } from "./Manifest.ts"
import * as ManifestM from "./Manifest.ts"
import { LayoutMismatch, ProbeAttachError, ProbeConfigError, ProbeLoadError } from "./ProbeError.ts"
import type { Target } from "./Target.ts"
import type { SpanData } from "./Telemetry.ts"
import { TelemetrySink } from "./Telemetry.ts"
import * as TracingConfigM from "./TracingConfig.ts"
import type { Sampler } from "./TracingConfig.ts"
import { TracingConfig } from "./TracingConfig.ts"

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
   * The probes whose maps this one reuses (`reuseMaps`), by name. The Manager attaches them to a process before this
   * one, and attaches a daemon only where a probe depending on it attaches.
   */
  readonly dependsOn: ReadonlyArray<string>
  /** Loader capability: the loaded object. */
  readonly loaded: Loaded
  /** Attacher capability. */
  readonly attacher: Attacher
  /** A map this probe shares with others (declared in `shares`), for their `reuseMaps`. */
  mapRef(map: Shares): Effect.Effect<MapRef, BpfMapError>
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
  /** The probes whose maps this one reuses, by name. */
  readonly dependsOn: ReadonlyArray<string>
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
}

/** An instrument probe's definition: also decodes records without a kernel (for tests and tools). */
export interface InstrumentDefinition<Name extends string, Config, ConfigInput, Shares extends string, R>
  extends Definition<Name, InstrumentProbe<Name, Config, Shares>, ConfigInput, Shares, R>
{
  /** Decode one ring-buffer record as the Runner would: undefined when the probe skips it. */
  readonly decode: (
    record: Uint8Array,
    config?: ConfigInput
  ) => Effect.Effect<SpanData | undefined, ProbeConfigError | Schema.SchemaError>
}

/** Probe-specific config input by probe name (e.g. from the agent's config file); absent means defaults. */
export const ProbeSettings = Context.Reference<Readonly<Record<string, unknown>>>("probescope/probe/ProbeSettings", {
  defaultValue: () => ({})
})

/** Provide probe settings by probe name. */
export const settings = (values: Readonly<Record<string, unknown>>): Layer.Layer<never> =>
  Layer.succeed(ProbeSettings, values)

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
  /** Path of the compiled object, usually `Probe.objectFile("<name>")` (bpf/out/<name>.bpf.o). */
  readonly object: string
  readonly manifest: Manifest<F>
  /** Probe-specific config; decoded from `ProbeSettings[name]` (default `{}`), so give fields defaults. */
  readonly config?: Schema.Codec<Config, ConfigInput>
  /** Maps other probes may reuse (their names in this object). */
  readonly shares?: ReadonlyArray<Shares>
  /** Maps taken from other probes, by this object's map name: `{ go_spans: GoContext.map("go_spans") }`. */
  readonly reuseMaps?: Readonly<Record<string, Deps>>
  readonly perTarget?: PerTarget<Config, F, T>
  /** Programs not to load, e.g. a variant the kernel forbids. */
  readonly disablePrograms?: (ctx: LoadContext<Config>) => ReadonlyArray<string>
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
  Rec
> extends CommonOptions<Name, F, Config, ConfigInput, Shares, T, Deps> {
  /** `.rodata` constants; the sampler's (`ps_sampler_*`) are added unless `sampling` is "none". */
  readonly constants?: (ctx: TracingLoadContext<Config>) => Readonly<Record<string, ConstantValue>>
  /** "rodata" (default): the object declares the `ps_sampler_*` constants. "none": the probe ignores sampling. */
  readonly sampling?: "rodata" | "none"
  /** The ring buffer (default map "events"). */
  readonly ringBuffer?: { readonly map?: string; readonly capacity?: number }
  /** Decodes one ring-buffer record; usually `Binary.schema(Binary.struct({...}))`. */
  readonly record: Schema.Codec<Rec, Uint8Array>
  /** Builds the span from a decoded record; undefined skips the record. */
  readonly span: (record: Rec, ctx: LoadContext<Config>) => SpanInput | undefined
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
  Rec = unknown
>(
  options: InstrumentOptions<Name, F, Config, ConfigInput, Shares, T, Deps, Rec>
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
  & Partial<Pick<InstrumentOptions<string, FieldSpecs, unknown, unknown, string, unknown, any, unknown>,
    "sampling" | "ringBuffer" | "record" | "span">>
  & { readonly constants?: (ctx: TracingLoadContext<unknown>) => Readonly<Record<string, ConstantValue>> }

const define = (kind: "instrument" | "daemon", options: AnyOptions) => {
  const name = options.name
  const problems = ManifestM.validate(options.manifest)
  if (problems.length > 0) throw new Error(`probe ${name}: invalid manifest: ${problems.join("; ")}`)
  const tag = Context.Service<ProbeId<string>, AnyProbe>(`probescope/probe/${name}`)
  const configSchema = (options.config ?? EmptyConfig) as Schema.Codec<unknown, unknown>
  const deps = Object.values(options.reuseMaps ?? {})
  const depProbes = [...new Map(deps.map((d) => [d.probe.tag.key, d.probe])).values()]
  const dependsOn = [...new Set(deps.map((d) => d.probe.name))]

  const make = (input: Effect.Effect<unknown>) =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const config = yield* decodeConfig(name, configSchema, yield* input)
      const sampler = kind === "instrument" ? (yield* TracingConfig).sampler : TracingConfigM.defaultSampler

      const reusedMaps: Record<string, MapRef> = {}
      for (const [mine, shared] of Object.entries(options.reuseMaps ?? {})) {
        const owner = yield* shared.probe.tag
        reusedMaps[mine] = yield* owner.mapRef(shared.map).pipe(Effect.mapError(loadError(name)))
      }
      const constants: Record<string, ConstantValue> = {
        ...(kind === "instrument" && options.sampling !== "none" ? TracingConfigM.constants(sampler) : {}),
        ...(options.constants?.({ config, sampler }) ?? {})
      }
      const disablePrograms = options.disablePrograms?.({ config }) ?? []
      const object = yield* bpf.load({
        file: options.object,
        name,
        constants,
        reuseMaps: reusedMaps,
        disablePrograms,
        uprobeMulti: true
      }).pipe(Effect.mapError(loadError(name)))
      const layouts = yield* checkLayouts(name, kind, options, object)
      for (const tp of options.manifest.tracepoints ?? []) {
        yield* object.attachTracepoint(tp).pipe(Effect.mapError(loadError(name)))
      }
      const loaded: Loaded = { object, constants, reusedMaps, layouts }
      const attacher = makeAttacher(
        name,
        options,
        loaded,
        config,
        disablePrograms,
        yield* Scope.Scope,
        yield* LinkGrace
      )
      const shares = new Set(options.shares ?? [])
      const base = {
        name,
        manifest: options.manifest as Manifest,
        config,
        dependsOn,
        loaded,
        attacher,
        mapRef: (map: string) =>
          shares.has(map) ? object.mapRef(map) : Effect.fail(
            new BpfMapError({
              op: "mapRef",
              errno: 0,
              code: "ENOTSHARED",
              message: `probe ${name} does not share map ${map} (declare it in \`shares\`)`,
              map
            })
          ),
        kernelStats: Effect.gen(function*() {
          const submitted = yield* object.lookup("ps_stats", u32Key(0))
          const dropped = yield* object.lookup("ps_stats", u32Key(1))
          return {
            submitted: submitted._tag === "Some" ? sumPerCpu(submitted.value) : 0n,
            dropped: dropped._tag === "Some" ? sumPerCpu(dropped.value) : 0n
          }
        })
      }
      const probe: AnyProbe = kind === "instrument" ?
        {
          ...base,
          kind: "instrument",
          runner: makeRunner(name, options, loaded, config),
          tracing: { sampler }
        } :
        { ...base, kind: "daemon" }
      yield* Effect.logDebug(`probe ${name} loaded`)
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

  const definition = {
    name,
    kind,
    manifest: options.manifest,
    dependsOn,
    tag,
    layer: build(Effect.map(ProbeSettings, (s) => s[name])),
    layerWith: (config: unknown) => build(Effect.succeed(config)),
    map: (map: string): SharedMap => ({ _tag: "SharedMap", probe: definition as never, map }),
    decode: (record: Uint8Array, input?: unknown) =>
      Effect.gen(function*() {
        const config = yield* decodeConfig(name, configSchema, input)
        const decoded = yield* Schema.decodeUnknownEffect(options.record! as Schema.Codec<unknown, Uint8Array>)(record)
        const span = options.span!(decoded, { config })
        return span === undefined ? undefined : { ...span, probe: name }
      })
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
const checkLayouts = (name: string, kind: "instrument" | "daemon", options: AnyOptions, object: BpfObject) =>
  Effect.gen(function*() {
    const btf = yield* object.btf
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
            path.basename(options.object),
            new LayoutMismatch({ role, struct, field: first.field, message: first.message }),
            mismatches.length - 1
          )
        }
        out.push({ role, struct, checked: true })
      })
    const record = kind === "instrument" && options.record !== undefined ? Binary.layoutOf(options.record) : undefined
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
          path.basename(options.object),
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

/**
 * The manifest as loaded: a disabled program is not in the kernel, so its symbol is attached without it, and a
 * symbol left with no program is dropped (a required one then cannot make the probe "missing" a symbol it would not
 * probe anyway, and a return program that is off does not demand RET instructions).
 */
const withoutPrograms = (manifest: Manifest, disabled: ReadonlyArray<string>): Manifest => {
  if (disabled.length === 0 || manifest.symbols === undefined) return manifest
  const off = new Set(disabled)
  const symbols = manifest.symbols.flatMap((s) => {
    const entry = s.entry !== undefined && !off.has(s.entry) ? s.entry : undefined
    const ret = s.return !== undefined && !off.has(s.return) ? s.return : undefined
    if (entry === undefined && ret === undefined) return []
    return [{
      name: s.name,
      ...(entry === undefined ? {} : { entry }),
      ...(ret === undefined ? {} : { return: ret }),
      ...(s.optional === undefined ? {} : { optional: s.optional })
    }]
  })
  return { ...manifest, symbols }
}

/**
 * How long a file's shared links outlive its last process (`PROBESCOPE_LINK_GRACE_MS` through the agent; default
 * 10 s): a restarted service finds them in place and is traced as soon as its per-pid entry is written.
 */
export const LinkGrace = Context.Reference<Duration.Duration>("probescope/probe/LinkGrace", {
  defaultValue: () => Duration.seconds(10)
})

/** Every program of the probe with the offsets it goes on in one target: one link each (uprobe_multi). */
const programOffsets = (manifest: Manifest, target: Target, symbols: ReadonlyArray<string>) => {
  const byProgram = new Map<string, Array<number>>()
  const add = (program: string, offsets: ReadonlyArray<number>) => {
    if (offsets.length === 0) return
    const list = byProgram.get(program)
    if (list === undefined) byProgram.set(program, [...offsets])
    else list.push(...offsets)
  }
  for (const symbol of symbols) {
    const spec = manifest.symbols!.find((s) => s.name === symbol)!
    const fn = target.function(symbol)
    if (fn._tag === "None") continue
    if (spec.entry !== undefined) add(spec.entry, [fn.value.entryOffset])
    if (spec.return !== undefined) add(spec.return, fn.value.returnOffsets)
  }
  return byProgram
}

/** The map of per-target values keyed by the executable file (bpf/include/probescope/targets.h). */
const FILE_MAP = "ps_target_files"

/**
 * The `struct ps_file_key` of a `Target.file` ("device:inode" as stat reports them): the kernel's `s_dev` encoding
 * (major << 20 | minor) from the C library's dev_t, then the inode; undefined when `file` is not of that form.
 */
export const fileKey = (file: string | undefined): Uint8Array | undefined => {
  const m = file === undefined ? null : /^(\d+):(\d+)$/.exec(file)
  if (m === null) return undefined
  const dev = BigInt(m[1]!)
  const major = ((dev & 0xfff00n) >> 8n) | ((dev & 0xfffff00000000000n) >> 32n)
  const minor = (dev & 0xffn) | ((dev & 0xffffff00000n) >> 12n)
  const key = new Uint8Array(16)
  const view = new DataView(key.buffer)
  view.setBigUint64(0, (major << 20n) | minor, true)
  view.setBigUint64(8, BigInt(m[2]!), true)
  return key
}

/** The links of one file, shared by the processes that use it. */
interface SharedLinks {
  readonly scope: Scope.Closeable
  readonly links: Deferred.Deferred<ReadonlyArray<Link>, BpfError>
  readonly users: Set<number>
  /** Bumped whenever the last user leaves: a pending close only acts if no user came and went since. */
  generation: number
}

const makeAttacher = (
  name: string,
  options: AnyOptions,
  loaded: Loaded,
  config: unknown,
  disablePrograms: ReadonlyArray<string>,
  probeScope: Scope.Scope,
  grace: Duration.Duration
): Attacher => {
  const { object } = loaded
  const manifest = withoutPrograms(options.manifest, disablePrograms)
  const perTarget = options.perTarget
  const targetMap = perTarget?.map ?? "ps_targets"
  const applicability = (target: Target) => ManifestM.check(name, manifest, target)
  const shared = new Map<string, SharedLinks>()

  // Each link's kernel work runs on a thread of its own: made and closed concurrently (a parallel scope), their
  // waits overlap instead of adding up — one grace period per detach rather than one per link.
  const attachLinks = (target: Target, symbols: ReadonlyArray<string>, pid: number | undefined) =>
    Effect.gen(function*() {
      const links = yield* Scope.fork(yield* Scope.Scope, "parallel")
      return yield* Effect.forEach(
        programOffsets(manifest, target, symbols),
        ([program, offsets]) =>
          object.attachUprobe({ program, binary: target.exe, offsets, ...(pid === undefined ? {} : { pid }) }),
        { concurrency: "unbounded" }
      ).pipe(Scope.provide(links))
    })

  /** Close a file's links once nobody used them for the grace; forked so no target's detach waits for it. */
  const release = (key: string, entry: SharedLinks) =>
    Effect.suspend(() => {
      entry.generation++
      const generation = entry.generation
      const close = Effect.suspend(() => {
        if (entry.users.size > 0 || entry.generation !== generation || shared.get(key) !== entry) return Effect.void
        shared.delete(key)
        return Scope.close(entry.scope, Exit.void)
      }).pipe(Effect.uninterruptible)
      return Effect.forkIn(Duration.isZero(grace) ? close : Effect.andThen(Effect.sleep(grace), close), probeScope)
    })

  /** The file's links, made by the first process that needs them; this target counts as a user until its scope closes. */
  const useShared = (target: Target, symbols: ReadonlyArray<string>, value: Uint8Array | undefined) =>
    Effect.gen(function*() {
      const key = target.file ?? target.exe
      let entry = shared.get(key)
      if (entry === undefined) {
        const made: SharedLinks = {
          scope: yield* Scope.fork(probeScope, "parallel"),
          links: Deferred.makeUnsafe<ReadonlyArray<Link>, BpfError>(),
          users: new Set(),
          generation: 0
        }
        // Another target of the same file may have got here while the scope was forked: use the first.
        entry = shared.get(key)
        if (entry === undefined) {
          entry = made
          shared.set(key, made)
          const exit = yield* Effect.andThen(
            fileEntry(target, value),
            attachLinks(target, symbols, undefined)
          ).pipe(Scope.provide(made.scope), Effect.exit)
          if (Exit.isFailure(exit)) {
            shared.delete(key)
            yield* Scope.close(made.scope, exit)
          }
          yield* Deferred.done(made.links, exit)
        } else {
          yield* Scope.close(made.scope, Exit.void)
        }
      }
      const current = entry
      current.users.add(target.pid)
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          current.users.delete(target.pid)
          return current.users.size === 0 ? release(key, current) : Effect.void
        })
      )
      return yield* Deferred.await(current.links)
    })

  /**
   * With file-wide links, the per-target value also goes under the file's identity (`ps_target_files`, see
   * bpf/include/probescope/targets.h), for as long as the links live: a process of the file is then served before
   * the agent has seen it start. Objects built without that map (older headers) keep the per-pid entries only.
   */
  const fileEntry = (target: Target, value: Uint8Array | undefined) => {
    const key = value === undefined || !object.maps.includes(FILE_MAP) ? undefined : fileKey(target.file)
    return key === undefined ? Effect.void : Effect.asVoid(Effect.acquireRelease(
      object.update(FILE_MAP, key, value!),
      () => Effect.ignore(object.delete(FILE_MAP, key))
    ))
  }

  const acquire = (target: Target, symbols: ReadonlyArray<string>, offsets: Record<string, number | undefined>) =>
    Effect.gen(function*() {
      let value: Uint8Array | undefined
      if (perTarget !== undefined) {
        const key = pidKey(target.pid)
        value = perTarget.layout.encode(perTarget.value({ target, offsets: offsets as never, config }))
        yield* Effect.acquireRelease(
          object.update(targetMap, key, value),
          () => Effect.ignore(object.delete(targetMap, key))
        )
      }
      return target.selection === "executable" ?
        yield* useShared(target, symbols, value) :
        yield* attachLinks(target, symbols, target.pid)
    })

  return {
    applicability,
    attach: Effect.fnUntraced(function*(target: Target) {
      const app = applicability(target)
      if (app._tag !== "Applies") {
        return yield* new ProbeAttachError({
          probe: name,
          pid: target.pid,
          reason: "NotApplicable",
          message: app._tag === "Global" ?
            `probe ${name} is global and is not attached per process` :
            `probe ${name} does not apply to pid ${target.pid}: ${app.reason}`
        })
      }
      const scope = yield* Scope.Scope
      const child = yield* Scope.fork(scope, "sequential")
      const links = yield* acquire(target, app.symbols, app.offsets).pipe(
        Scope.provide(child),
        Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Scope.close(child, exit)),
        Effect.mapError((e) =>
          new ProbeAttachError({
            probe: name,
            pid: target.pid,
            reason: e._tag,
            message: `probe ${name}: attach to pid ${target.pid} failed: ${e.message}`
          })
        )
      )
      const attachment: Attachment = {
        probe: name,
        pid: target.pid,
        symbols: app.symbols,
        missingOptional: app.missingOptional,
        links
      }
      return attachment
    })
  }
}

const makeRunner = (name: string, options: AnyOptions, loaded: Loaded, config: unknown): Runner => {
  const decode = Schema.decodeUnknownExit(options.record! as Schema.Codec<unknown, Uint8Array, never, never>)
  const toSpan = options.span!
  const ctx = { config }
  const map = options.ringBuffer?.map ?? "events"
  const rbOptions = options.ringBuffer?.capacity === undefined ? undefined : { capacity: options.ringBuffer.capacity }
  let records = 0
  let decodeErrors = 0
  let skipped = 0
  let consumerStats: Effect.Effect<{ readonly dropped: number }> = Effect.succeed({ dropped: 0 })
  /** The running loop's ring and a signal that the loop has finished, for `stop`. */
  let running: { readonly rb: RingBuffer; readonly done: Deferred.Deferred<void> } | undefined

  const run = Effect.gen(function*() {
    const sink = yield* TelemetrySink
    const rb = yield* loaded.object.ringBuffer(map, rbOptions)
    consumerStats = rb.stats
    const done = Deferred.makeUnsafe<void>()
    running = { rb, done }
    yield* Effect.addFinalizer(() => Effect.andThen(Deferred.done(done, Exit.void), Effect.sync(() => running = undefined)))
    // Records arrive in batches (one ring-buffer drain): decode the batch synchronously, then emit its spans.
    yield* Stream.runForEachArray(rb.records, (batch) => {
      const spans: Array<SpanData> = []
      let firstBad = -1
      for (let i = 0; i < batch.length; i++) {
        const exit = decode(batch[i]!)
        if (Exit.isFailure(exit)) {
          decodeErrors++
          if (firstBad < 0) firstBad = batch[i]!.length
          continue
        }
        const span = toSpan(exit.value, ctx)
        if (span === undefined) {
          skipped++
          continue
        }
        records++
        spans.push({ ...span, probe: name })
      }
      const emit = spans.length === 0 ?
        Effect.void :
        sink.spans !== undefined ?
        sink.spans(spans) :
        Effect.forEach(spans, sink.span, { discard: true })
      return firstBad >= 0 && decodeErrors <= 10 ?
        Effect.andThen(Effect.logWarning(`probe ${name}: undecodable record of ${firstBad} bytes`), emit) :
        emit
    })
  }).pipe(
    Effect.scoped,
    Effect.catch((e) => Effect.logError(`probe ${name}: ring buffer ${map} unavailable: ${e.message}`))
  )

  const stats: Effect.Effect<RunnerStats> = Effect.map(
    Effect.suspend(() => consumerStats),
    (s) => ({ records, decodeErrors, skipped, consumerDropped: s.dropped })
  )
  const stop = Effect.suspend(() =>
    running === undefined ? Effect.void : Effect.andThen(running.rb.close, Deferred.await(running.done))
  )
  return { run, stats, stop }
}
