/**
 * The `probescope` command. It stands on every other layer and nothing stands on it.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import * as BpfLive from "../kernel/BpfLive.ts"
import * as Doctor from "./Doctor.ts"
import { version } from "./version.ts"

const doctor = Command.make(
  "doctor",
  { json: Flag.Boolean("json").pipe(Flag.withDescription("Print the report as JSON"), Flag.withDefault(false)) },
  Effect.fn("probescope.doctor")(function*({ json }) {
    const report = yield* Doctor.run.pipe(Effect.provide(BpfLive.layer))
    yield* Console.log(json ? JSON.stringify(report) : Doctor.formatTable(report))
    if (!report.ok) process.exitCode = 1
  })
).pipe(Command.withDescription("Check that this machine can run the agent: kernel, BTF, uprobes, privileges, a live round trip"))

const probescope = Command.make("probescope").pipe(
  Command.withDescription("eBPF auto-instrumentation for Go programs, exporting OpenTelemetry"),
  Command.withSubcommands([doctor])
)

probescope.pipe(
  Command.run({ version }),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
