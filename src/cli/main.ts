/**
 * The `probescope` command. It stands on every other layer and nothing stands on it.
 *
 * Every command turns a failure into one line on stderr and a non-zero exit; `run` treats SIGINT/SIGTERM as the
 * normal way to stop: the agent's layers detach everything and flush telemetry, then it exits 0.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Cause, Console, Effect, Exit, Layer, Logger, Option, References, Schedule } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as BpfLive from "../kernel/BpfLive.ts"
import { Manager } from "../manager/Manager.ts"
import * as GoBinary from "../target/GoBinary.ts"
import { Telemetry, formatStats } from "../telemetry/Telemetry.ts"
import * as Agent from "./Agent.ts"
import * as Doctor from "./Doctor.ts"
import { UsageError } from "./Errors.ts"
import * as Inspect from "./Inspect.ts"
import { version } from "./version.ts"

/** Fails with one readable line: the error's message (typed errors all carry one). */
const oneLine = <A, E extends { readonly message: string }, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.catch((e) =>
      Effect.andThen(Console.error(`probescope: ${e.message}`), Effect.sync(() => void (process.exitCode = 1)))
    )
  )

const json = Flag.Boolean("json").pipe(Flag.withDescription("Print machine-readable JSON"), Flag.withDefault(false))

const doctor = Command.make(
  "doctor",
  { json },
  Effect.fn("probescope.doctor")(function*({ json }) {
    const report = yield* Doctor.run.pipe(Effect.provide(BpfLive.layer))
    yield* Console.log(json ? JSON.stringify(report) : Doctor.formatTable(report))
    if (!report.ok) process.exitCode = 1
  })
).pipe(Command.withDescription("Check that this machine can run the agent: kernel, BTF, uprobes, privileges, a live round trip"))

const inspect = Command.make(
  "inspect",
  {
    binary: Argument.String("binary").pipe(Argument.withDescription("A Go executable"), Argument.optional),
    pid: Flag.Int("pid").pipe(Flag.withDescription("Inspect a running process instead"), Flag.optional),
    json
  },
  ({ binary, json, pid }) =>
    oneLine(Effect.gen(function*() {
      const report = Option.isSome(pid)
        ? yield* Inspect.pid(pid.value)
        : Option.isSome(binary)
        ? yield* Inspect.file(binary.value)
        : yield* new UsageError({ message: "inspect needs a BINARY or --pid N" })
      yield* Console.log(json ? JSON.stringify(report, null, 2) : Inspect.format(report))
    })).pipe(Effect.provide(GoBinary.layer))
).pipe(Command.withDescription("Analyse a Go binary or process: versions, which probes apply, attach points, offsets"))

/** Per-probe counters; the final one omits attached processes, which are being detached by then. */
const statusLines = (final: boolean) => Effect.gen(function*() {
  const manager = yield* Manager
  const telemetry = yield* Telemetry
  const lines = (yield* manager.stats).filter((s) => s.kind === "instrument").map((s) =>
    `probescope: ${s.probe}: ${s.records} spans, ${final ? "" : `${s.targets} process(es), `}${s.decodeErrors} decode errors, ` +
    `${s.consumerDropped + Number(s.kernelDropped)} dropped, ${s.attachFailures} attach failures`
  )
  lines.push(`probescope: ${formatStats(yield* telemetry.stats)}`)
  return lines.join("\n")
})

const run = Command.make(
  "run",
  {
    pids: Flag.Int("pid").pipe(Flag.withDescription("A process to instrument (repeatable)"), Flag.atLeast(0)),
    exes: Flag.String("exe").pipe(
      Flag.withDescription("An executable: every running and future process of it (repeatable)"),
      Flag.atLeast(0)
    ),
    allGo: Flag.Boolean("all-go").pipe(
      Flag.withDescription("Also every running and future Go process the built-in probes support"),
      Flag.withDefault(false)
    ),
    statusEvery: Flag.Int("status-interval").pipe(
      Flag.withDescription("Seconds between status lines on stderr (0: only at exit)"),
      Flag.withDefault(0)
    )
  },
  ({ allGo, exes, pids, statusEvery }) =>
    oneLine(Effect.gen(function*() {
      if (pids.length === 0 && exes.length === 0 && !allGo) {
        return yield* new UsageError({ message: "run needs at least one --pid N, --exe PATH or --all-go" })
      }
      yield* Effect.scoped(Effect.gen(function*() {
        const manager = yield* Manager
        yield* Effect.addFinalizer(() => Effect.flatMap(statusLines(true), Console.error))
        const probes = manager.probes.map((p) => p.name).join(", ")
        yield* Console.error(`probescope: ready: probes ${probes}; watching ${[...pids.map((p) => `pid ${p}`), ...exes, ...(allGo ? ["every Go process"] : [])].join(", ")}`)
        if (statusEvery > 0) {
          yield* Effect.forkScoped(
            Effect.flatMap(statusLines(false), Console.error).pipe(Effect.repeat(Schedule.spaced(`${statusEvery} seconds`)))
          )
        }
        return yield* Effect.never
      }).pipe(Effect.provide(Agent.layer(allGo ? { pids, exes, goPredicate: () => true } : { pids, exes }))))
    }))
).pipe(Command.withDescription("Attach to Go processes and export their traces (OTEL_* variables configure export)"))

const probescope = Command.make("probescope").pipe(
  Command.withDescription("eBPF auto-instrumentation for Go programs, exporting OpenTelemetry"),
  Command.withSubcommands([doctor, inspect, run])
)

/** Logs go to stderr (stdout is the console exporter's); interrupt-only exits are a normal stop. */
const Logging = Layer.mergeAll(
  Logger.layer([Logger.consolePretty()]),
  Layer.succeed(Logger.LogToStderr, true),
  Layer.succeed(References.MinimumLogLevel, "Info")
)

probescope.pipe(
  Command.run({ version }),
  Effect.provide(Layer.merge(NodeServices.layer, Logging)),
  (program) =>
    NodeRuntime.runMain(program, {
      teardown: (exit, onExit) => {
        if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) return onExit(1)
        onExit(typeof process.exitCode === "number" ? process.exitCode : 0)
      }
    })
)
