/**
 * What `run` and `list` make of `--probe`, `--no-builtins` and `--config`: the probes (the built-ins unless turned
 * off, then each module's in the order given), their settings, the selection and the export overrides; and `list`'s
 * report of every probe. The command line wins over the config file, which wins over the environment.
 */
import { Effect, Option } from "effect"
import * as Agent from "../agent/Agent.ts"
import * as ConfigFile from "./ConfigFile.ts"
import { UsageError } from "./Errors.ts"

/** Where probes came from: the built-ins, or a module as the user named it. */
export interface Source {
  readonly source: string
  readonly probes: ReadonlyArray<Agent.AgentProbe>
}

/** Everything `run` needs besides its own flags. */
export interface Setup {
  readonly selection: {
    readonly pids: ReadonlyArray<number>
    readonly exes: ReadonlyArray<string>
    readonly ports: ReadonlyArray<number>
    readonly containers: ReadonlyArray<string>
    readonly cgroups: ReadonlyArray<string>
    readonly allGo: boolean
  }
  /** `resource.commandArgs` from the config file, when it says (else the environment decides). */
  readonly commandArgs: boolean | undefined
  readonly sources: ReadonlyArray<Source>
  /** Every probe of every source, each once. */
  readonly probes: ReadonlyArray<Agent.AgentProbe>
  readonly settings: Readonly<Record<string, unknown>>
  /** `OTEL_*` values from the config file, which win over the environment. */
  readonly env: Readonly<Record<string, string>>
}

/** The flags `setup` reads (`list` has no selection flags). */
export interface Flags {
  readonly probes: ReadonlyArray<string>
  readonly builtins: Option.Option<boolean>
  readonly config: Option.Option<string>
  readonly pids?: ReadonlyArray<number>
  readonly exes?: ReadonlyArray<string>
  readonly ports?: ReadonlyArray<number>
  readonly containers?: ReadonlyArray<string>
  readonly cgroups?: ReadonlyArray<string>
  readonly allGo?: boolean
}

/** Reads the config file (if any) and loads every probe module; selection lists are the union of both. */
export const setup = (flags: Flags) =>
  Effect.gen(function*() {
    const file = Option.getOrUndefined(flags.config)
    const config: ConfigFile.ConfigFile = file === undefined ? {} : yield* ConfigFile.load(file)
    const builtins = Option.getOrElse(flags.builtins, () => config.probes?.builtins ?? true)
    const modules = [
      ...(config.probes?.modules ?? []).map((m) => ({ name: m, path: ConfigFile.resolve(file!, m) })),
      ...flags.probes.map((m) => ({ name: m, path: m }))
    ]
    const sources: Array<Source> = builtins ? [{ source: "builtin", probes: Agent.builtins }] : []
    for (const m of modules) {
      // A bare name is a built-in's (`--probe tcp_metrics`); anything else is a module to import.
      const named = /^\w+$/.test(m.name) ? Agent.builtin(m.name) : undefined
      sources.push(
        named !== undefined ?
          { source: "builtin", probes: [named] } :
          { source: m.name, probes: yield* Agent.loadProbeModule(m.path) }
      )
    }
    const probes = [...new Set(sources.flatMap((s) => s.probes))]
    if (probes.length === 0) {
      return yield* new UsageError({
        message: "no probes to run: --no-builtins needs at least one --probe NAME or MODULE"
      })
    }
    const union = <A>(a: ReadonlyArray<A>, b: ReadonlyArray<A>) => [...new Set([...a, ...b])]
    return {
      selection: {
        pids: union(config.selection?.pids ?? [], flags.pids ?? []),
        exes: union((config.selection?.exes ?? []).map((e) => ConfigFile.resolve(file!, e)), flags.exes ?? []),
        ports: union(config.selection?.ports ?? [], flags.ports ?? []),
        containers: union(config.selection?.containers ?? [], flags.containers ?? []),
        cgroups: union(config.selection?.cgroups ?? [], flags.cgroups ?? []),
        allGo: (flags.allGo ?? false) || (config.selection?.allGo ?? false)
      },
      commandArgs: config.resource?.commandArgs,
      sources,
      probes,
      settings: config.probes?.settings ?? {},
      env: ConfigFile.overrides(config)
    } satisfies Setup
  })

/** One probe as `list` shows it: what `Agent.describe` reports, and where it came from. */
export type Listed = Omit<Agent.ProbeInfo, "manifest"> & { readonly source: string }

/**
 * Every probe, each attributed to the first source that loads it (a custom probe's dependency on a built-in is the
 * built-in's), in the order the agent attaches them.
 */
export const list = (setup: Setup) =>
  Effect.gen(function*() {
    const all = yield* Agent.describe(setup.probes, setup.settings)
    const sourceOf = new Map<string, string>()
    for (const s of setup.sources) {
      for (const info of yield* Agent.describe(s.probes, setup.settings)) {
        if (!sourceOf.has(info.name)) sourceOf.set(info.name, s.source)
      }
    }
    return all.map(({ manifest: _, ...info }): Listed => ({ ...info, source: sourceOf.get(info.name) ?? "builtin" }))
  })

const versions = (p: Listed): string => {
  const parts: Array<string> = []
  if (p.libraryVersions !== null) parts.push(`${p.library?.module ?? ""} ${p.libraryVersions}`)
  if (p.goVersions !== null) parts.push(`Go ${p.goVersions}`)
  return parts.length === 0 ? "any" : parts.join(", ")
}

/** The human form: a few lines per probe. */
export const format = (listed: ReadonlyArray<Listed>): string =>
  listed.map((p) => {
    const library = p.library !== null ?
      `${p.library.module}${p.library.package === null ? "" : ` (${p.library.package})`}` :
      p.targets === "any-process" ?
      "none: every selected process, any language (tracepoints)" :
      "none (global)"
    const lines = [
      `${p.name}  ${p.kind}  from ${p.source}`,
      `  library     ${library}`,
      `  versions    ${versions(p)}`
    ]
    for (const [i, s] of p.symbols.entries()) {
      const programs = [s.entry === null ? "" : `entry ${s.entry}`, s.return === null ? "" : `return ${s.return}`]
        .filter((x) => x !== "").join(", ")
      const label = i === 0 ? "symbols    " : "           "
      const feature = s.feature === null ? "" : `feature ${s.feature}; `
      lines.push(`  ${label} ${s.name} (${s.required ? "required" : "optional"}; ${feature}${programs})`)
    }
    if (p.uses.length > 0) lines.push(`  uses        ${p.uses.join(", ")}`)
    if (p.tracepoints.length > 0) lines.push(`  tracepoints ${p.tracepoints.join(", ")}`)
    if (p.cgroups.length > 0) lines.push(`  cgroup      ${p.cgroups.join(", ")} (attached at load)`)
    lines.push(`  signals     ${p.signals.length === 0 ? "none" : p.signals.join(", ")}`)
    if (p.metrics.length > 0) lines.push(`  metrics     ${p.metrics.join(", ")}`)
    lines.push(`  attributes  ${p.attributes === null ? "not declared" : p.attributes.join(", ")}`)
    return lines.join("\n")
  }).join("\n\n")

/** The agent's selection from the setup's. */
export const agentSelection = (s: Setup["selection"]): Agent.Selection => ({
  pids: s.pids,
  exes: s.exes,
  ports: s.ports,
  containers: s.containers,
  cgroups: s.cgroups,
  ...(s.allGo ? { goPredicate: () => true } : {})
})

/** Whether the setup selects anything at all. */
export const selectsAnything = (s: Setup["selection"]): boolean =>
  s.pids.length + s.exes.length + s.ports.length + s.containers.length + s.cgroups.length > 0 || s.allGo

/** `list`'s targets: one line per process run would pick now, and what it would do. */
export const formatTargets = (targets: ReadonlyArray<Agent.Planned>): string =>
  targets.length === 0
    ? "targets: no running process is selected"
    : ["targets:", ...targets.map((t) =>
      `  pid ${t.pid}  ${t.exe}  by ${t.selectedBy.join(", ")}: ${t.attach ? "attach" : `not attached: ${t.reason}`}`
    )].join("\n")
