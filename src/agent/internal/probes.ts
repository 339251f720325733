/**
 * The probes an agent runs: what it accepts (probe definitions and layers, built-in or custom), the built-ins, and
 * what `describe` reports of each — the data behind `probescope list` and the agent's "is this target supported"
 * check, which therefore see exactly the probes given.
 */
import { Context, Effect, Layer, References, Schema } from "effect"
import type { Bpf } from "../../kernel/Bpf.ts"
import * as BpfTest from "../../kernel/BpfTest.ts"
import {
  DatabaseSql,
  GoContext,
  GoPanic,
  GoRedis,
  Grpc,
  KafkaGo,
  NetHttpClient,
  NetHttpServer,
  OpenSslHttp,
  OtelTrace,
  TcpContext,
  TcpMetrics
} from "../../instrumentations/index.ts"
import type { Instruments } from "../../probe/Instruments.ts"
import type * as Manifest from "../../probe/Manifest.ts"
import * as Probe from "../../probe/Probe.ts"
import type { ProbeConfigError, ProbeLoadError } from "../../probe/ProbeError.ts"
import * as ProbeRegistry from "../../probe/ProbeRegistry.ts"
import * as TracingConfig from "../../probe/TracingConfig.ts"

/** What a probe layer may need from the agent: the kernel, the registry it registers in, the sampler. */
export type ProbeRequirements = Bpf | ProbeRegistry.ProbeRegistry | TracingConfig.TracingConfig

/** A layer that loads and registers one or more probes (a definition's `layer`, or several merged). */
export type ProbeLayer = Layer.Layer<never, ProbeConfigError | ProbeLoadError, ProbeRequirements>

/** The signals a probe emits. */
export type Signal = "spans" | "metrics" | "logs"

/**
 * What the agent needs of a probe definition, as `Probe.instrument` and `Probe.daemon` return it. `attributes` and
 * `signals` are optional metadata for `probescope list`: the attributes the probe sets and the signals it emits (add
 * them with `{ ...Probe.instrument({...}), attributes: [...], emits: ["spans", "logs"] }`); without `emits`, an
 * instrument is listed with spans, plus metrics when it declares instruments.
 */
export interface ProbeDefinition {
  readonly name: string
  readonly kind: "instrument" | "daemon"
  readonly manifest: Manifest.Manifest
  readonly layer: ProbeLayer
  /** The probes it needs loaded first (a `Probe.instrument`/`Probe.daemon` definition says). */
  readonly dependsOn?: ReadonlyArray<string>
  readonly attributes?: ReadonlyArray<string>
  readonly emits?: ReadonlyArray<Signal>
  readonly instruments?: Instruments
}

/** A probe the agent runs: a definition, or a layer of probes. */
export type AgentProbe = ProbeDefinition | ProbeLayer

/** One symbol a probe attaches to. */
export interface SymbolInfo {
  readonly name: string
  readonly required: boolean
  /** The BPF program on the function's entry, or null. */
  readonly entry: string | null
  /** The BPF program on every RET of the function, or null. */
  readonly return: string | null
  /** The feature it belongs to (attached only where a probe applying to the process uses it), or null. */
  readonly feature: string | null
}

/** What `describe` (and `probescope list`) reports of one probe. */
export interface ProbeInfo {
  readonly name: string
  readonly kind: "instrument" | "daemon"
  /** The library instrumented (`std` is the standard library), or null for a global probe. */
  readonly library: { readonly module: string; readonly package: string | null } | null
  /** Supported Go versions and library versions, as ranges (null: any). */
  readonly goVersions: string | null
  readonly libraryVersions: string | null
  readonly symbols: ReadonlyArray<SymbolInfo>
  /**
   * What the probe attaches to: a Go module's functions, a shared library's (any language), the tracepoints of
   * every selected process, or nothing per process (global).
   */
  readonly targets: "go" | "shared-library" | "any-process" | "global"
  /** Tracepoints, as `category/name`: per selected process for an any-process probe, else attached at load. */
  readonly tracepoints: ReadonlyArray<string>
  /** Cgroup programs attached at load, as `attach point/program` (e.g. `sock_ops/tcp_context`). */
  readonly cgroups: ReadonlyArray<string>
  /** What the probe emits (a daemon nothing). */
  readonly signals: ReadonlyArray<Signal>
  /** The metrics it declares, by name. */
  readonly metrics: ReadonlyArray<string>
  /** Span attributes the probe sets, where declared (null: not declared). */
  readonly attributes: ReadonlyArray<string> | null
  /** The features of other probes it uses, as `probe.feature`, with the settings given. */
  readonly uses: ReadonlyArray<string>
  /** The whole manifest, for checks against targets. */
  readonly manifest: Manifest.Manifest
}

const isProbeLayer = (u: unknown): u is ProbeLayer => Layer.isLayer(u)

/** A probe definition's shape; what else a definition carries (its tag, `map`, `decode`) is not needed here. */
const DefinitionShape = Schema.Struct({
  name: Schema.String,
  kind: Schema.Literals(["instrument", "daemon"]),
  manifest: Schema.Record(Schema.String, Schema.Unknown),
  layer: Schema.declare(isProbeLayer),
  attributes: Schema.optionalKey(Schema.Array(Schema.String))
})


/** Whether a value is a probe definition (as `Probe.instrument`/`Probe.daemon` return it). */
export const isDefinition: (u: unknown) => u is ProbeDefinition = Schema.is(DefinitionShape) as never

/** Whether a value is something the agent runs: a definition or a layer. */
export const isAgentProbe = (u: unknown): u is AgentProbe => isDefinition(u) || isProbeLayer(u)

/** The layer of an agent probe. */
export const layerOf = (probe: AgentProbe): ProbeLayer => isProbeLayer(probe) ? probe : probe.layer

/**
 * The layers in dependency levels: the definitions nothing given depends on first, then those depending only on them,
 * and so on, each level built side by side (a probe's object is verified on a thread of its own, so ten probes load
 * in about the time of the slowest few) and given every level before it. A layer that is not a definition (a
 * module's own composition) cannot say what it depends on: those come after the definitions, one after another.
 */
const chainOf = (probes: ReadonlyArray<AgentProbe>, layers: ReadonlyArray<ProbeLayer>): ProbeLayer => {
  const definitions = new Map<ProbeLayer, ProbeDefinition>()
  for (const p of probes) if (isDefinition(p) && !definitions.has(p.layer)) definitions.set(p.layer, p)
  const given = new Set([...definitions.values()].map((d) => d.name))
  const depth = new Map<string, number>()
  const depthOf = (d: ProbeDefinition, seen: ReadonlySet<string> = new Set()): number => {
    const known = depth.get(d.name)
    if (known !== undefined) return known
    let level = 0
    for (const dep of d.dependsOn ?? []) {
      const def = [...definitions.values()].find((x) => x.name === dep)
      // A dependency that is not given is built by the probe itself; a cycle is the probe API's to report.
      if (def === undefined || !given.has(dep) || seen.has(dep)) continue
      level = Math.max(level, 1 + depthOf(def, new Set([...seen, d.name])))
    }
    depth.set(d.name, level)
    return level
  }
  const levels: Array<Array<ProbeLayer>> = []
  const others: Array<ProbeLayer> = []
  for (const layer of layers) {
    const d = definitions.get(layer)
    if (d === undefined) others.push(layer)
    else (levels[depthOf(d)] ??= []).push(layer)
  }
  const byLevel = levels.filter((l) => l !== undefined).reduce<ProbeLayer>(
    (built, level) =>
      (level.length === 1 ? level[0]! : Layer.mergeAll(...(level as [ProbeLayer, ...Array<ProbeLayer>]))).pipe(
        Layer.provideMerge(built)
      ),
    Layer.empty
  )
  return others.reduce<ProbeLayer>((built, layer) => layer.pipe(Layer.provideMerge(built)), byLevel)
}

/**
 * Every given probe as one layer, each loaded once however often it is listed:
 * - a definition whose name an earlier one has is left out, with a warning: two copies of one probe module (a
 *   checkout's `src/` probe next to the built-ins compiled to `dist/`) would load the same object twice;
 * - each layer is given what the ones before it made, so a dependency already built (go_context, found by its tag) is
 *   shared rather than loaded again from another copy of its module.
 */
export const combine = (probes: ReadonlyArray<AgentProbe>): ProbeLayer => {
  const names = new Set<string>()
  const skipped: Array<string> = []
  const layers: Array<ProbeLayer> = []
  for (const probe of probes) {
    if (isDefinition(probe)) {
      if (names.has(probe.name)) {
        skipped.push(probe.name)
        continue
      }
      names.add(probe.name)
    }
    const layer = layerOf(probe)
    if (!layers.includes(layer)) layers.push(layer)
  }
  const combined = chainOf(probes, layers)
  return skipped.length === 0 ? combined : combined.pipe(Layer.tap(() =>
    Effect.logWarning(
      `probe(s) ${[...new Set(skipped)].join(", ")} given more than once: the first of each is used`
    )
  ))
}

/**
 * Every probe with the load policy it is built under (`Probe.LoadPolicy`): `choice` for all when one is made
 * (`Agent.Options.load`, `PROBESCOPE_PROBE_LOAD`); otherwise the built-ins load when a process first needs them and
 * every other probe — yours, from `--probe` or a composition of your own — loads at start, so a probe being written
 * that the verifier rejects (or whose layout disagrees with its BTF) stops the start with its error.
 */
export const withLoadPolicy = (
  probes: ReadonlyArray<AgentProbe>,
  choice: "eager" | "onAttach" | undefined
): ReadonlyArray<AgentProbe> => {
  const shipped = new Set<ProbeLayer>([...builtins, ...optionalBuiltins].map((d) => d.layer))
  const under = (layer: ProbeLayer): ProbeLayer =>
    layer.pipe(Layer.provide(Probe.loadPolicy(choice ?? (shipped.has(layer) ? "onAttach" : "eager"))))
  // One wrapped layer per original, so a layer listed twice (or shared by two definitions) stays one layer.
  const wrapped = new Map<ProbeLayer, ProbeLayer>()
  const wrap = (layer: ProbeLayer) => {
    let w = wrapped.get(layer)
    if (w === undefined) wrapped.set(layer, w = under(layer))
    return w
  }
  return probes.map((p) => isProbeLayer(p) ? wrap(p) : { ...p, layer: wrap(p.layer) })
}

const HTTP_COMMON = ["http.request.method", "http.request.method_original", "http.response.status_code"]

/**
 * The built-in probes `run` uses by default, in dependency order, with the attributes they set
 * (docs/instrumentations.md). Each attaches only where it applies: the Go ones to Go programs, openssl_http to
 * processes that map OpenSSL 3.
 */
export const builtins: ReadonlyArray<ProbeDefinition> = [
  GoContext.GoContext,
  {
    ...NetHttpServer.NetHttpServer,
    attributes: [
      ...HTTP_COMMON,
      "http.route",
      "url.path",
      "url.scheme",
      "server.address",
      "server.port",
      "network.peer.address",
      "network.peer.port",
      "network.protocol.version",
      "error.type"
    ]
  },
  {
    ...NetHttpClient.NetHttpClient,
    attributes: [...HTTP_COMMON, "url.full", "server.address", "server.port", "network.local.port", "error.type"]
  },
  {
    ...Grpc.Grpc,
    attributes: [
      "rpc.system",
      "rpc.service",
      "rpc.method",
      "rpc.grpc.status_code",
      "server.address",
      "server.port",
      "network.peer.address",
      "network.peer.port"
    ]
  },
  {
    ...DatabaseSql.DatabaseSql,
    attributes: [
      "db.system.name",
      "db.namespace",
      "db.operation.name",
      "db.collection.name",
      "db.query.text",
      "server.address",
      "server.port",
      "error.type"
    ]
  },
  {
    ...GoRedis.GoRedis,
    attributes: [
      "db.system.name",
      "db.namespace",
      "db.operation.name",
      "db.operation.batch.size",
      "db.query.text",
      "db.response.status_code",
      "server.address",
      "server.port",
      "error.type"
    ]
  },
  {
    ...KafkaGo.KafkaGo,
    emits: ["spans", "metrics"],
    attributes: [
      "messaging.system",
      "messaging.operation.name",
      "messaging.operation.type",
      "messaging.destination.name",
      "messaging.destination.partition.id",
      "messaging.consumer.group.name",
      "messaging.batch.message_count",
      "messaging.kafka.message.key",
      "messaging.kafka.offset",
      "server.address",
      "server.port",
      "error.type"
    ]
  },
  // Spans the program makes by hand with the OpenTelemetry Go API: their attributes are the program's own (`list`
  // says "not declared").
  OtelTrace.OtelTrace,
  {
    ...GoPanic.GoPanic,
    emits: ["logs", "spans", "metrics"],
    attributes: ["exception.type", "exception.message", "error.type", "http.route", "url.path", ...HTTP_COMMON]
  },
  {
    ...OpenSslHttp.OpenSslHttp,
    attributes: [
      ...HTTP_COMMON,
      "url.full",
      "url.path",
      "url.query",
      "url.scheme",
      "server.address",
      "server.port",
      "network.protocol.version",
      "user_agent.original",
      "error.type"
    ]
  }
]

const targetsOf = (m: Manifest.Manifest): ProbeInfo["targets"] =>
  m.library?.sharedObject !== undefined ?
    "shared-library" :
    m.library !== undefined ?
    "go" :
    m.processes === "any" ?
    "any-process" :
    "global"

/**
 * Built-ins used only when asked for by name (`probescope run --probe tcp_metrics`, `Agent.builtin("tcp_context")`):
 * - tcp_metrics applies to every process, of any language, so by default it would make any selected process
 *   "supported" and hide a mistaken selection behind a metrics-only attach;
 * - tcp_context attaches a sock_ops program to a whole cgroup (by default the cgroup v2 root: every TCP connection of
 *   the host) and adds a TCP option to the segments of traced requests: a change to the host's traffic that the
 *   operator turns on (docs/tcp-context.md).
 */
export const optionalBuiltins: ReadonlyArray<ProbeDefinition> = [
  {
    ...TcpMetrics.TcpMetrics,
    emits: ["metrics"],
    attributes: ["network.transport", "network.type", "server.port", "tcp.connection.side", "error.type"]
  },
  TcpContext.TcpContext
]

/** A built-in (default or optional) by its name, or undefined. */
export const builtin = (name: string): ProbeDefinition | undefined =>
  [...builtins, ...optionalBuiltins].find((p) => p.name === name)

const infoOf = (
  probe: {
    readonly name: string
    readonly kind: "instrument" | "daemon"
    readonly manifest: Manifest.Manifest
    readonly emits?: ReadonlyArray<Signal>
    readonly instruments?: Instruments
    readonly uses?: ReadonlyArray<{ readonly probe: string; readonly feature: string }>
  },
  attributes: ReadonlyArray<string> | undefined
): ProbeInfo => {
  const m = probe.manifest
  const metrics = Object.values(probe.instruments ?? {}).map((i) => i.name)
  return {
    name: probe.name,
    kind: probe.kind,
    library: m.library === undefined ? null : {
      module: m.library.module ?? m.library.sharedObject ?? "",
      package: m.library.package ?? null
    },
    goVersions: m.goVersions ?? null,
    libraryVersions: m.library?.versions ?? null,
    symbols: (m.symbols ?? []).map((s) => ({
      name: s.name,
      required: s.optional !== true,
      entry: s.entry ?? null,
      return: s.return ?? null,
      feature: s.feature ?? null
    })),
    targets: targetsOf(m),
    tracepoints: (m.tracepoints ?? []).map((t) => `${t.category}/${t.name}`),
    cgroups: (m.cgroups ?? []).map((c) => `${c.attach}/${c.program}`),
    signals: probe.kind === "daemon" ? [] : probe.emits ?? (metrics.length > 0 ? ["spans", "metrics"] : ["spans"]),
    metrics,
    attributes: attributes ?? null,
    uses: (probe.uses ?? []).map((u) => `${u.probe}.${u.feature}`),
    manifest: m
  }
}

/** A loaded probe as a probe layer provides it (under its tag), or as the registry of older layers holds it. */
interface Loaded {
  readonly name: string
  readonly kind: "instrument" | "daemon"
  readonly manifest: Manifest.Manifest
  readonly dependsOn?: ReadonlyArray<string>
}

const isLoaded = (u: unknown): u is Loaded =>
  typeof u === "object" && u !== null && typeof (u as Loaded).name === "string" &&
  ((u as Loaded).kind === "instrument" || (u as Loaded).kind === "daemon") &&
  typeof (u as Loaded).manifest === "object" && typeof (u as { attacher?: unknown }).attacher === "object"

/** By name, each after the probes it depends on: the order the Manager attaches in. */
const attachOrder = (probes: ReadonlyArray<Loaded>): ReadonlyArray<Loaded> => {
  const pending = [...probes].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  const names = new Set(pending.map((p) => p.name))
  const placed = new Set<string>()
  const ordered: Array<Loaded> = []
  while (pending.length > 0) {
    const i = pending.findIndex((p) => (p.dependsOn ?? []).every((d) => placed.has(d) || !names.has(d)))
    const next = pending.splice(i < 0 ? 0 : i, 1)[0]!
    ordered.push(next)
    placed.add(next.name)
  }
  return ordered
}

/**
 * The probes in the order they were given, so reasons and listings read as the user wrote them: a daemon nobody
 * named (a dependency) first, then the named definitions in order, then what only a layer declared (in attach order).
 */
const givenOrder = (loaded: ReadonlyArray<Loaded>, given: ReadonlyArray<AgentProbe>): ReadonlyArray<Loaded> => {
  const named = given.filter(isDefinition).map((d) => d.name)
  const rank = (p: Loaded) => {
    const i = named.indexOf(p.name)
    return i >= 0 ? i : p.kind === "daemon" ? -1 : named.length
  }
  return loaded.map((p, i) => ({ p, i })).sort((a, b) => rank(a.p) - rank(b.p) || a.i - b.i).map(({ p }) => p)
}

/**
 * Every probe the given ones load — dependencies (e.g. go_context) included, in the order given — with what each
 * declares. The layers are built on the fake kernel (nothing is loaded into the real one, no privileges needed) with
 * the given probe settings, so a layer's probes are known too and a bad setting fails here, before anything starts.
 */
export const describe = (
  probes: ReadonlyArray<AgentProbe>,
  settings: Readonly<Record<string, unknown>> = {}
): Effect.Effect<ReadonlyArray<ProbeInfo>, ProbeConfigError | ProbeLoadError> =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      combine(probes).pipe(
        Layer.provideMerge(ProbeRegistry.layer),
        // What is described is known before any load (name, manifest, dependencies, uses, the decoded settings):
        // loading on the fake kernel too would only spend the start's time. A layer that chose its own policy keeps it.
        Layer.provide(Layer.mergeAll(
          BpfTest.layer,
          TracingConfig.layer(),
          Probe.settings(settings),
          Probe.loadPolicy("onAttach")
        ))
      )
    )
    // A probe layer provides its probe (and its dependencies) under their tags; layers that still register in the
    // registry are found there.
    const byName = new Map<string, Loaded>()
    const registered = yield* Context.get(context, ProbeRegistry.ProbeRegistry).probes
    for (const p of [...context.mapUnsafe.values(), ...registered]) {
      if (isLoaded(p) && !byName.has(p.name)) byName.set(p.name, p)
    }
    // What only a definition says (the layer's loaded probe does not): attributes, signals, instruments.
    const declared = new Map<string, ProbeDefinition>()
    for (const p of [...probes, ...builtins, ...optionalBuiltins]) {
      if (isDefinition(p) && !declared.has(p.name)) declared.set(p.name, p)
    }
    return givenOrder(attachOrder([...byName.values()]), probes).map((p) => {
      const d = declared.get(p.name)
      return infoOf({
        ...p,
        ...(d?.emits === undefined ? {} : { emits: d.emits }),
        ...(d?.instruments === undefined ? {} : { instruments: d.instruments })
      }, d?.attributes)
    })
  }).pipe(
    Effect.scoped,
    // Built on the fake kernel only to be read: what the probes log at load (e.g. a lockdown notice) is said when
    // the agent loads them for real.
    Effect.provideService(References.MinimumLogLevel, "None")
  )
