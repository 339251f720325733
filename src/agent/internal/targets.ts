/**
 * What the agent decides about targets before the Manager sees them: which analysis a process gets (Go, or native
 * when a given probe can apply to any process), whether any given instrument applies (with each one's reason when
 * none does), the explicit targets' checks, how a process was selected, the executable's identity for shared links,
 * and the link grace from the environment.
 */
import { Config, Duration, Effect, Option } from "effect"
import * as Manifest from "../../probe/Manifest.ts"
import type { Target } from "../../probe/Target.ts"
import type * as GoBinary from "../../target/GoBinary.ts"
import { TargetAnalysis } from "../../target/GoBinary.ts"
import * as NativeBinary from "../../target/NativeBinary.ts"
import { NativeAnalysis } from "../../target/NativeBinary.ts"
import * as ProcessTarget from "../../target/ProcessTarget.ts"
import { AgentConfigError, UnsupportedTarget } from "./errors.ts"
import type { ProbeInfo } from "./probes.ts"

/**
 * What to instrument, as a union: a process is selected when any selector picks it. Explicit PIDs; executables,
 * as paths or absolute globs (running and future processes); the processes listening on TCP ports; the processes of
 * containers (an id or a prefix of one) or of cgroups (absolute path globs); and/or every process whose analysed
 * binary satisfies `goPredicate` (e.g. every Go program: `() => true`; Go programs only).
 */
export interface Selection {
  readonly pids: ReadonlyArray<number>
  /** Paths (symlinks resolved) or globs (`*`, `**`, `?`, `[...]`; absolute) of executables. */
  readonly exes: ReadonlyArray<string>
  /** TCP ports: the processes listening on one, in their own network namespace, now or later. */
  readonly ports?: ReadonlyArray<number>
  /** Container ids or prefixes of them (lowercase hex), as the runtime shows them. */
  readonly containers?: ReadonlyArray<string>
  /** Cgroup path globs, as /proc/PID/cgroup shows the paths (`/kubepods.slice/**`). */
  readonly cgroups?: ReadonlyArray<string>
  readonly goPredicate?: (binary: GoBinary.GoBinary) => boolean
}

/**
 * Whether some given instrument can apply to a process that is not Go: a shared-library probe or a tracepoint
 * instrument. Without one, a process that is not Go is not a target at all (as before native analysis): it is not
 * analysed natively, and naming one is the "not a Go program" error it always was.
 */
export const nativeCapable = (probes: ReadonlyArray<ProbeInfo>): boolean =>
  probes.some((p) =>
    p.kind === "instrument" &&
    (Manifest.isSharedObject(p.manifest.library) || Manifest.isTracepointInstrument(p.manifest))
  )

/** The shared libraries the given probes name: only these of a process's mapped objects are analysed. */
export const wantedLibraries = (probes: ReadonlyArray<ProbeInfo>): ReadonlySet<string> =>
  new Set(probes.flatMap((p) => Manifest.isSharedObject(p.manifest.library) ? [p.manifest.library.sharedObject] : []))

/** An analysed process: a Go one (as `TargetAnalysis.analyzePid` gives it), or any, with its libraries. */
export type Analysed = GoBinary.GoProcess | ProcessTarget.ProcessTarget

/** The Go binary of an analysed process, if it is Go (what `--all-go` decides on). */
export const goBinaryOf = (target: Analysed): GoBinary.GoBinary | undefined =>
  target.language === "go" ? target.binary : undefined

/**
 * Analyses a process the way the given probes need: Go analysis alone when only Go probes are given (nothing
 * changes for them), else Go or native analysis with the libraries the probes name. `native` is the native
 * analysis to use; one is made when the context has none.
 */
export const analyze = (probes: ReadonlyArray<ProbeInfo>, pid: number) =>
  Effect.gen(function*() {
    const go = yield* TargetAnalysis
    if (!nativeCapable(probes)) return (yield* go.analyzePid(pid)) as Analysed
    const native = yield* nativeAnalysis
    return (yield* ProcessTarget.analyzeProcess(pid, { libraries: wantedLibraries(probes) }).pipe(
      Effect.provideService(NativeAnalysis, native)
    )) as Analysed
  })

/** The native analysis in the context, or a fresh one (its own cache). */
export const nativeAnalysis: Effect.Effect<NativeAnalysis["Service"]> = NativeBinary.current

/** Why no given instrument applies to a target (a daemon alone produces nothing), or undefined. */
export const unsupported = (probes: ReadonlyArray<ProbeInfo>, target: Target): string | undefined => {
  const reasons: Array<string> = []
  for (const probe of probes) {
    if (probe.kind !== "instrument") continue
    const app = Manifest.check(probe.name, probe.manifest, target)
    if (app._tag === "Applies") return undefined
    if (app._tag === "NotApplicable") reasons.push(`${probe.name}: ${app.reason}`)
  }
  const why = reasons.length === 0 ? "no instrument probe is given" : reasons.join("; ")
  const what = target.language === "go" ? `Go ${target.goVersion}` : "not Go"
  return `${target.exe} (${what}) is not supported: ${why}`
}

/**
 * A process the user named must be instrumentable — at least one given instrument applies to it as it runs now (Go
 * or not: its mapped libraries are known) — or the agent fails up front with each probe's reason, rather than
 * sitting idle. (An executable, `checkExe`, that is not Go is left to the agent when a probe could apply to a
 * process of it: which libraries its processes will map is only known once they run.)
 */
export const checkPid = (probes: ReadonlyArray<ProbeInfo>, pid: number) =>
  Effect.gen(function*() {
    const target = yield* analyze(probes, pid)
    const reason = unsupported(probes, target)
    if (reason !== undefined) return yield* new UnsupportedTarget({ message: `pid ${pid}: ${reason}` })
  })

/** Also gives the executable's analysis when it is Go (none otherwise): the agent preloads its probes from it. */
export const checkExe = (probes: ReadonlyArray<ProbeInfo>, path: string) =>
  Effect.gen(function*() {
    const analysis = yield* TargetAnalysis
    const binary = yield* analysis.analyzeFile(path).pipe(
      Effect.map(Option.some),
      Effect.catchTag("NotGo", (e) => nativeCapable(probes) ? Effect.succeed(Option.none()) : Effect.fail(e))
    )
    if (Option.isNone(binary)) return binary
    const b = binary.value
    const reason = unsupported(probes, { ...b, pid: 0, exe: b.path, libraries: [] })
    if (reason !== undefined) return yield* new UnsupportedTarget({ message: reason })
    return binary
  })

/**
 * How long a file's shared links outlive its last process (`PROBESCOPE_LINK_GRACE_MS`, default 10000, 0 closes them
 * at once), so a restarted service is traced without re-attaching.
 */
export const linkGrace = Config.String("PROBESCOPE_LINK_GRACE_MS").pipe(
  Config.option,
  Effect.mapError((e) => new AgentConfigError({ variable: "PROBESCOPE_LINK_GRACE_MS", message: e.message })),
  Effect.flatMap((value) => {
    if (value._tag === "None" || value.value.trim() === "") return Effect.succeed(Duration.seconds(10))
    const text = value.value.trim()
    if (/^\d+$/.test(text) && Number(text) <= 3_600_000) return Effect.succeed(Duration.millis(Number(text)))
    return Effect.fail(
      new AgentConfigError({
        variable: "PROBESCOPE_LINK_GRACE_MS",
        message: `Invalid PROBESCOPE_LINK_GRACE_MS=${JSON.stringify(value.value)}: expected whole milliseconds ` +
          `from 0 to 3600000`
      })
    )
  })
)

/**
 * Whether resources carry `process.command_args` (`PROBESCOPE_RESOURCE_COMMAND_ARGS`: true/false, default false).
 * Off by default because arguments can hold secrets (tokens, passwords on command lines) that would then be sent
 * with every span.
 */
export const commandArgs = Config.Boolean("PROBESCOPE_RESOURCE_COMMAND_ARGS").pipe(
  Config.withDefault(false),
  Effect.mapError((e) =>
    new AgentConfigError({
      variable: "PROBESCOPE_RESOURCE_COMMAND_ARGS",
      message: `Invalid PROBESCOPE_RESOURCE_COMMAND_ARGS: expected true or false (${e.message})`
    })
  )
)

/**
 * `PROBESCOPE_PROBE_LOAD`: when the agent's probes go into the kernel (`Probe.LoadPolicy`). "on-attach": each when a
 * process first needs it, so an agent whose targets use three probes verifies three objects, not ten; "eager": all at
 * start, so a probe the kernel rejects fails the start rather than its first process; unset (undefined): the
 * built-ins on attach, every other probe at start (`withLoadPolicy`).
 */
export const loadPolicy = Config.String("PROBESCOPE_PROBE_LOAD").pipe(
  Config.option,
  Effect.mapError((e) => new AgentConfigError({ variable: "PROBESCOPE_PROBE_LOAD", message: e.message })),
  Effect.flatMap((value): Effect.Effect<"eager" | "onAttach" | undefined, AgentConfigError> => {
    const text = value._tag === "None" ? "" : value.value.trim()
    if (text === "") return Effect.succeed(undefined)
    if (text === "on-attach") return Effect.succeed("onAttach")
    if (text === "eager") return Effect.succeed("eager")
    return Effect.fail(
      new AgentConfigError({
        variable: "PROBESCOPE_PROBE_LOAD",
        message: `Invalid PROBESCOPE_PROBE_LOAD=${JSON.stringify(value._tag === "None" ? "" : value.value)}: ` +
          `expected on-attach or eager`
      })
    )
  })
)
