/**
 * What the agent decides about targets before the Manager sees them: whether any given instrument applies (with
 * each one's reason when none does), the explicit targets' checks, how a process was selected, the executable's
 * identity for shared links, and the link grace from the environment.
 */
import { Config, Duration, Effect } from "effect"
import * as Manifest from "../../probe/Manifest.ts"
import type { Target } from "../../probe/Target.ts"
import type * as GoBinary from "../../target/GoBinary.ts"
import { TargetAnalysis } from "../../target/GoBinary.ts"
import { AgentConfigError, UnsupportedTarget } from "./errors.ts"
import type { ProbeInfo } from "./probes.ts"

/**
 * What to instrument, as a union: a process is selected when any selector picks it. Explicit PIDs; executables,
 * as paths or absolute globs (running and future processes); the processes listening on TCP ports; the processes of
 * containers (an id or a prefix of one) or of cgroups (absolute path globs); and/or every process whose analysed
 * binary satisfies `goPredicate` (e.g. every Go program: `() => true`).
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
  return `${target.exe} (Go ${target.goVersion}) is not supported: ${why}`
}

/**
 * What the user named must be instrumentable — analysable Go that at least one given instrument supports — or the
 * agent fails up front with the reasons, rather than sitting idle.
 */
export const checkPid = (probes: ReadonlyArray<ProbeInfo>, pid: number) =>
  Effect.gen(function*() {
    const analysis = yield* TargetAnalysis
    const reason = unsupported(probes, yield* analysis.analyzePid(pid))
    if (reason !== undefined) return yield* new UnsupportedTarget({ message: `pid ${pid}: ${reason}` })
  })

export const checkExe = (probes: ReadonlyArray<ProbeInfo>, path: string) =>
  Effect.gen(function*() {
    const analysis = yield* TargetAnalysis
    const binary = yield* analysis.analyzeFile(path)
    const reason = unsupported(probes, { ...binary, pid: 0, exe: binary.path, libraries: [] })
    if (reason !== undefined) return yield* new UnsupportedTarget({ message: reason })
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
