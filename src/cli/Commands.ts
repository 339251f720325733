/**
 * The `probescope` commands. They stand on every other layer and nothing stands on them; main.ts loads this module
 * once it listens for signals.
 *
 * Every command turns a failure into one line on stderr and a non-zero exit (Lifecycle.ExitCode); `run` treats
 * SIGINT/SIGTERM as the normal way to stop: the agent's layers detach everything and flush telemetry, then it exits 0
 * (3 when some telemetry was lost).
 */
// The module itself, not the package index: the index loads every platform module (Redis client, WebSocket, ...).
import * as NodeServices from "@effect/platform-node/NodeServices"
import { ConfigProvider, Console, Effect, Layer, Option, References, Schedule } from "effect"
import { Argument, CliError, CliOutput, Command, Flag } from "effect/cli"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Agent from "../agent/Agent.ts"
import * as BpfLive from "../kernel/BpfLive.ts"
import { Manager } from "../manager/Manager.ts"
import * as GoBinary from "../target/GoBinary.ts"
import { Telemetry, formatStats } from "../telemetry/Telemetry.ts"
import * as TelemetryConfig from "../telemetry/TelemetryConfig.ts"
import * as BpfBuild from "./BpfBuild.ts"
import * as Doctor from "./Doctor.ts"
import { InsufficientPrivileges, UsageError } from "./Errors.ts"
import * as Inspect from "./Inspect.ts"
import * as Lifecycle from "./Lifecycle.ts"
import * as Logging from "./Logging.ts"
import * as PidWatch from "./PidWatch.ts"
import * as Priority from "./Priority.ts"
import * as ProbeList from "./ProbeList.ts"
import * as Status from "./Status.ts"
import { version } from "./version.ts"

/** Whether a failure is the user's command line: effect/cli's parse errors and our own `UsageError`. */
export const isUsageError = (error: unknown): boolean =>
  CliError.isCliError(error) ||
  (typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "UsageError")

/**
 * Ends with one readable line on a failure: the error's message (typed errors all carry one), in the command's log
 * format, with the cause only at `--log-level debug`; a usage error exits 2, anything else 1 (see Logging.reported).
 */
const oneLine = Logging.reported

const json = Flag.Boolean("json").pipe(Flag.withDescription("Print machine-readable JSON"), Flag.withDefault(false))

/** `--pid`: a positive integer (effect/cli's Int already refuses "abc"). */
const pidFlag = (description: string) =>
  Flag.Int("pid").pipe(
    Flag.withDescription(description),
    Flag.filter((pid) => pid > 0, () => "a positive process id")
  )

/**
 * The selectors other than `--pid`, shared by `run`, `list` and `inspect` (where `--pid` is the process inspected).
 * Ranges and forms are checked by the agent (`Agent.validateSelection`), in one line each, exit 2.
 */
const selectorFlags = {
  exes: Flag.String("exe").pipe(
    Flag.withDescription(
      "An executable path or absolute glob (*, **, ?, [...]): every running and future process of it (repeatable)"
    ),
    Flag.atLeast(0)
  ),
  ports: Flag.Int("port").pipe(
    Flag.withDescription("The process listening on this TCP port, now or later (repeatable)"),
    Flag.atLeast(0)
  ),
  containers: Flag.String("container").pipe(
    Flag.withDescription("The processes of a container: its id or a prefix of it (repeatable)"),
    Flag.atLeast(0)
  ),
  cgroups: Flag.String("cgroup").pipe(
    Flag.withDescription(
      "The processes of cgroups matching an absolute path glob, e.g. /kubepods.slice/** (repeatable)"
    ),
    Flag.atLeast(0)
  ),
  allGo: Flag.Boolean("all-go").pipe(
    Flag.withDescription("Also every running and future Go process the probes support"),
    Flag.withDefault(false)
  )
}

/** A selector that can never match is the user's command line: one line, exit 2. */
const validateSelection = (selection: ProbeList.Setup["selection"]) =>
  Agent.validateSelection(ProbeList.agentSelection(selection)).pipe(
    Effect.mapError((e) => new UsageError({ message: e.message }))
  )

const doctor = Command.make(
  "doctor",
  { json, ...Logging.flags },
  Effect.fn("probescope.doctor")(function*({ json }) {
    yield* Lifecycle.commandStarted(false)
    const report = yield* Doctor.run().pipe(Effect.provide(BpfLive.layer))
    yield* Console.log(json ? JSON.stringify(report) : Doctor.formatTable(report))
    if (!report.ok) Lifecycle.setExitCode(Lifecycle.ExitCode.error)
  }, oneLine)
).pipe(
  Logging.withLogging,
  Command.withDescription(
    "Check that this machine can run the agent: each kernel feature the probes use, probed live, then per probe"
  )
)

const inspect = Command.make(
  "inspect",
  {
    binary: Argument.String("binary").pipe(
      Argument.withDescription("An executable (Go, C, C++, Rust) or a shared library"),
      Argument.optional
    ),
    pid: pidFlag("Inspect a running process instead").pipe(Flag.optional),
    ...Logging.flags,
    json,
    ...selectorFlags,
    config: Flag.String("config").pipe(
      Flag.withDescription("With --pid: the config file whose selection (and probes) to check the process against"),
      Flag.optional
    )
  },
  (flags) =>
    oneLine(Effect.gen(function*() {
      const { binary, json, pid } = flags
      yield* Lifecycle.commandStarted(false)
      if (Option.isNone(pid) && Option.isNone(binary)) {
        return yield* new UsageError({ message: "inspect needs a BINARY or --pid N" })
      }
      // The probes run would use (the built-ins, and a config file's): each one's applicability is what is shown.
      const setup = yield* ProbeList.setup({ ...flags, probes: [], builtins: Option.none() })
      const probes = yield* Agent.describe(setup.probes, setup.settings)
      const report = Option.isSome(pid)
        ? yield* Inspect.pid(pid.value, probes)
        : yield* Inspect.file(Option.getOrThrow(binary), probes)
      if (!ProbeList.selectsAnything(setup.selection)) {
        return yield* Console.log(json ? JSON.stringify(report, null, 2) : Inspect.format(report))
      }
      if (Option.isNone(pid)) {
        return yield* new UsageError({ message: "inspect checks selectors against a running process: add --pid N" })
      }
      yield* validateSelection(setup.selection)
      const selection = yield* Agent.explain(
        ProbeList.agentSelection(setup.selection),
        probes,
        pid.value,
        report.binary.path
      )
      const withSelection = { ...report, selection: Inspect.selectionReport(selection) }
      yield* Console.log(json ? JSON.stringify(withSelection, null, 2) : Inspect.format(withSelection))
    })).pipe(Effect.provide(GoBinary.layer))
).pipe(
  Logging.withLogging,
  Command.withDescription(
    "Analyse a binary or process (Go or native, with its shared libraries): versions, which probes apply and why " +
      "not, attach points, offsets; with selectors and --pid, " +
      "whether run would attach to it and which selector picks it"
  )
)

/** Per-probe counters; the final ones omit attached processes, which are being detached by then. */
const probeLines = (final: boolean) =>
  Effect.gen(function*() {
    const all = (yield* (yield* Manager).stats).filter((s) => s.kind === "instrument")
    // A probe no process has needed was never loaded: its counters say nothing, its name is enough.
    const stats = all.filter((s) => s.load !== "unloaded")
    const idle = all.filter((s) => s.load === "unloaded").map((s) => s.probe)
    const lines = stats.map((s) =>
      `probescope: ${s.probe}: ${s.records} records, ${final ? "" : `${s.targets} process(es), `}` +
      `${s.decodeErrors} decode errors, ${s.kernelDropped} dropped in the kernel, ${s.consumerDropped} dropped by ` +
      `the consumer, ${s.attachFailures} attach failures` +
      (s.signalErrors > 0 ? `, ${s.signalErrors} outside the probe's declared signals` : "")
    )
    if (idle.length > 0) lines.push(`probescope: not loaded (no process needed them): ${idle.join(", ")}`)
    const dropped = stats.some((s) => s.consumerDropped > 0 || s.kernelDropped > 0n)
    return { lines, dropped }
  })

const statusLines = Effect.gen(function*() {
  const { lines } = yield* probeLines(false)
  lines.push(`probescope: ${formatStats(yield* (yield* Telemetry).stats)}`)
  return lines.join("\n")
})

/**
 * While `run` runs: on a terminal with text logs, the live status line (redrawn every second; Status.liveLine keeps
 * other output above it); with `--status-interval S`, the status lines every S seconds, or a `status` record each in
 * json logs. Off a terminal and without the flag, nothing.
 */
const reportStatus = (every: number) =>
  Effect.gen(function*() {
    const { settings } = yield* Logging.LogSettings
    const manager = yield* Manager
    const telemetry = yield* Telemetry
    const snapshot: Effect.Effect<Status.Snapshot> = Effect.gen(function*() {
      const targets = yield* manager.targets
      return { atMillis: Date.now(), targets: targets.length, probes: yield* manager.stats, telemetry: yield* telemetry.stats }
    })
    if (every > 0) {
      let previous = yield* snapshot
      const record = Effect.gen(function*() {
        const now = yield* snapshot
        yield* Effect.logInfo("status").pipe(Effect.annotateLogs(Status.annotations(Status.status(previous, now))))
        previous = now
      })
      const tick = settings.format === "json" ? record : Effect.flatMap(statusLines, Console.error)
      yield* Effect.forkScoped(tick.pipe(Effect.repeat(Schedule.spaced(`${every} seconds`))))
    }
    if (settings.format === "text" && process.stderr.isTTY === true) {
      const live = yield* Status.liveLine(process.stderr)
      let previous = yield* snapshot
      const redraw = Effect.gen(function*() {
        const now = yield* snapshot
        // A pseudo-terminal may report no width: assume a wide one rather than cut the line to nothing.
        const columns = process.stderr.columns > 20 ? process.stderr.columns : 160
        yield* live.show(`probescope: ${Status.render(Status.status(previous, now), columns - 13)}`)
        previous = now
      })
      yield* Effect.forkScoped(redraw.pipe(Effect.delay("1 second"), Effect.forever))
    }
  })

const readText = (file: string): string => {
  try {
    return Fs.readFileSync(file, "utf8")
  } catch {
    return ""
  }
}

/** The owner of a process, or undefined when it is gone (analysis then reports it). */
const ownerOf = (pid: number): number | undefined => {
  try {
    return Fs.statSync(`/proc/${pid}`).uid
  } catch {
    return undefined
  }
}

/**
 * Fails up front, in one line, when the agent lacks the capabilities it cannot work without: otherwise the first
 * `bpf()` call fails with a bare EPERM. What it could use but can do without is a warning.
 */
export const checkPrivileges = (pids: ReadonlyArray<number>, sweeping: boolean) =>
  Effect.gen(function*() {
    const euid = process.geteuid?.() ?? 0
    const otherUsers = pids.some((pid) => {
      const owner = ownerOf(pid)
      return owner !== undefined && owner !== euid
    })
    const memlock = Doctor.memlockBound(Os.release(), readText("/proc/self/limits"))
    const privileges = Doctor.agentPrivileges(readText("/proc/self/status"), { otherUsers, memlock })
    if (privileges.fatal) {
      return yield* new InsufficientPrivileges({
        missing: privileges.missing,
        message: Doctor.privilegesMessage(privileges.missing)
      })
    }
    if (sweeping && privileges.missing.length > 0) {
      yield* Effect.logWarning(
        `without ${privileges.missing.join(", ")} processes of other users cannot be read and are skipped`
      )
    }
  })

/** `--probe`, `--no-builtins` and `--config`, shared by `run` and `list`. */
const probeFlags = {
  probes: Flag.String("probe").pipe(
    Flag.withDescription(
      "A built-in by name (e.g. tcp_metrics) or a probe module (.js, .mjs, or .ts where Node strips types) to run " +
        "too (repeatable)"
    ),
    Flag.atLeast(0)
  ),
  builtins: Flag.Boolean("builtins").pipe(
    Flag.withDescription("Run the built-in probes (--no-builtins: only the given ones)"),
    Flag.optional
  ),
  config: Flag.String("config").pipe(
    Flag.withDescription("A YAML or JSON file: probes, their settings, the selection, export (see docs/cli.md)"),
    Flag.optional
  )
}

const run = Command.make(
  "run",
  {
    pids: pidFlag("A process to instrument (repeatable)").pipe(Flag.atLeast(0)),
    ...Logging.flags,
    ...selectorFlags,
    statusEvery: Flag.Int("status-interval").pipe(
      Flag.withDescription("Seconds between status lines on stderr (0: only at exit)"),
      Flag.filter((s) => s >= 0, () => "a number of seconds, 0 or more"),
      Flag.withDefault(0)
    ),
    ...probeFlags
  },
  (flags) =>
    oneLine(Effect.gen(function*() {
      yield* Lifecycle.commandStarted(true)
      const setup = yield* ProbeList.setup(flags)
      if (!ProbeList.selectsAnything(setup.selection)) {
        return yield* new UsageError({
          message: "run needs at least one --pid N, --exe PATH, --port N, --container ID, --cgroup PATH or --all-go"
        })
      }
      yield* validateSelection(setup.selection)
      // The config file's export settings win over the environment's OTEL_* variables, for everything below.
      yield* runAgent({ ...setup, statusEvery: flags.statusEvery }).pipe(
        Effect.provide(ConfigProvider.layerAdd(ConfigProvider.fromUnknown(setup.env), { asPrimary: true }))
      )
    }))
).pipe(Logging.withLogging, Command.withDescription("Attach to Go processes and export their traces (OTEL_* variables configure export)"))

const runAgent = (setup: ProbeList.Setup & { readonly statusEvery: number }) =>
  Effect.gen(function*() {
    const { pids } = setup.selection
    const { statusEvery } = setup
    // Read before anything starts: a bad value is reported now, and the bound holds from the first signal on.
    const config = yield* TelemetryConfig.load
    Lifecycle.setShutdownTimeout(config.shutdownTimeoutMillis)
    // Up front: a bad value fails before anything starts, and a value given holds from the start.
    const priority = yield* Priority.apply
    // Anything but pids can pick processes that start later, of any user.
    const sweeping = ProbeList.selectsAnything({ ...setup.selection, pids: [] })
    yield* checkPrivileges(pids, sweeping)

    // The Manager and telemetry outlive the inner scope: what was read, dropped and exported is only known once
    // the agent's layers have detached, drained the rings and flushed. Their counters stay readable after close.
    let telemetry: Telemetry["Service"] | undefined
    let manager: Manager["Service"] | undefined
    const finish = Effect.suspend(() => {
      if (telemetry === undefined || manager === undefined) return Effect.void
      return Effect.gen(function*() {
        const { dropped, lines } = yield* probeLines(true).pipe(Effect.provideService(Manager, manager!))
        const stats = yield* telemetry!.stats
        for (const line of [...lines, `probescope: ${formatStats(stats)}`]) {
          yield* Logging.say(line.replace(/^probescope: /, ""))
        }
        if (dropped || stats.lost.total > 0) Lifecycle.setExitCode(Lifecycle.ExitCode.dataLost)
      })
    })
    yield* Effect.gen(function*() {
      manager = yield* Manager
      telemetry = yield* Telemetry
      const agent = yield* Agent.Agent
      const started = telemetry
      // The shutdown deadline counts from the signal, not from when telemetry starts closing.
      Lifecycle.onShutdown(() => Effect.runSync(started.beginShutdown))
      // Ready once the processes selected now are attached (or failed): requests from here on are traced.
      const report = yield* agent.ready
      for (const u of report.unmatched) yield* Logging.say(`warning: ${u.selector}: ${u.reason}`)
      for (const f of report.failed) {
        yield* Logging.say(`pid ${f.pid}${f.exe === "" ? "" : ` (${f.exe})`}: not attached: ${f.reason}`)
      }
      yield* Logging.say(`ready: ${readyLine(agent, report, setup.selection)}`)
      // Unset PROBESCOPE_NICE: from here on, give way to the traced programs while busy and the host has room.
      yield* Priority.governor(priority)
      yield* reportStatus(statusEvery)
      if (sweeping) return yield* Effect.never
      // Only named pids: nothing new can ever be selected once they are all gone.
      yield* PidWatch.allExited(pids)
      yield* Logging.say("every selected process has exited")
      Lifecycle.armShutdownBound()
    }).pipe(
      Effect.scoped,
      Effect.provide(Agent.layer({
        selection: ProbeList.agentSelection(setup.selection),
        probes: setup.probes,
        settings: setup.settings,
        ...(setup.commandArgs === undefined ? {} : { resource: { commandArgs: setup.commandArgs } })
      })),
      Effect.ensuring(finish)
    )
  })

/** `probes …; watching …; N process(es) attached[, M failed]`. */
export const readyLine = (
  agent: Pick<Agent.Agent["Service"], "probes">,
  report: Agent.ReadyReport,
  selection: Pick<ProbeList.Setup["selection"], "pids" | "exes" | "allGo"> & Partial<ProbeList.Setup["selection"]>
): string => {
  const watching = [
    ...selection.pids.map((p) => `pid ${p}`),
    ...selection.exes,
    ...(selection.ports ?? []).map((p) => `port ${p}`),
    ...(selection.containers ?? []).map((c) => `container ${c}`),
    ...(selection.cgroups ?? []).map((c) => `cgroup ${c}`),
    ...(selection.allGo ? ["every Go process"] : [])
  ]
  const failed = report.failed.length > 0 ? `, ${report.failed.length} failed` : ""
  return `probes ${agent.probes.map((p) => p.name).join(", ")}; watching ${watching.join(", ")}; ` +
    `${report.attached.length} process(es) attached${failed}`
}

const list = Command.make(
  "list",
  {
    json,
    ...Logging.flags,
    ...probeFlags,
    pids: pidFlag("A process to check as run would (repeatable)").pipe(Flag.atLeast(0)),
    ...selectorFlags
  },
  (flags) =>
    oneLine(Effect.gen(function*() {
      yield* Lifecycle.commandStarted(false)
      const setup = yield* ProbeList.setup(flags)
      const listed = yield* ProbeList.list(setup)
      if (!ProbeList.selectsAnything(setup.selection)) {
        return yield* Console.log(flags.json ? JSON.stringify({ probes: listed }, null, 2) : ProbeList.format(listed))
      }
      // With selectors: also the running processes run would pick now, decided as run decides.
      yield* validateSelection(setup.selection)
      const probes = yield* Agent.describe(setup.probes, setup.settings)
      const targets = yield* Agent.plan(ProbeList.agentSelection(setup.selection), probes)
      yield* Console.log(
        flags.json
          ? JSON.stringify({ probes: listed, targets }, null, 2)
          : `${ProbeList.format(listed)}\n\n${ProbeList.formatTargets(targets)}`
      )
    })).pipe(Effect.provide(GoBinary.layer))
).pipe(
  Logging.withLogging,
  Command.withDescription(
    "List the probes (built-in and --probe/--config modules): what each instruments and emits; with selectors, " +
      "also the running processes run would attach"
  )
)

/** The whole command tree. */
export const probescope = Command.make("probescope").pipe(
  Command.withDescription("eBPF auto-instrumentation for Go programs, exporting OpenTelemetry"),
  Command.withSubcommands([doctor, inspect, run, list, BpfBuild.command])
)

/** A parse error's messages on one line (effect/cli's may span several, with suggestions). */
export const usageLine = (
  commandPath: ReadonlyArray<string>,
  errors: ReadonlyArray<{ readonly message: string }>
): string =>
  `probescope: ${errors.map((e) => e.message.replace(/\s*\n\s*/g, " ").trim()).join("; ")} ` +
  `(see ${commandPath.join(" ")} --help)`

/**
 * Usage errors as one line on stderr instead of the help followed by an error block; help and the version as
 * effect/cli prints them.
 */
export const OneLinePresenter = CliOutput.layerPresenter({
  present: (event) =>
    event._tag === "InvalidInvocation"
      ? Console.error(usageLine(event.commandPath, event.errors))
      : CliOutput.defaultPresenter.present(event)
})

/** Logs go to stderr (stdout is the console exporter's), as the agent's own do. */
const DefaultLogging = Layer.merge(Agent.layerLogger, Layer.succeed(References.MinimumLogLevel, "Info"))

/** The CLI with its services, as main.ts runs it (tests run it with `Command.runWith` instead). */
export const program = probescope.pipe(
  Command.run({ version }),
  Effect.provide(Layer.mergeAll(NodeServices.layer, DefaultLogging, OneLinePresenter))
)

/** Runs the CLI; see Lifecycle for signals and exit codes. */
export const main = (earlySignals: ReadonlyArray<NodeJS.Signals>, installed: () => void): void =>
  Lifecycle.runMain({ earlySignals, installed, isUsage: isUsageError })(program)
