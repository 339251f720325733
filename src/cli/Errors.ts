/** Errors the CLI itself raises (the layers below have their own). */
import { Schema } from "effect"

/** The command line asks for nothing, or for something contradictory. */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

/** `run` lacks capabilities it cannot work without; `missing` lists every one it would use and lacks. */
export class InsufficientPrivileges extends Schema.TaggedError<InsufficientPrivileges>()("InsufficientPrivileges", {
  missing: Schema.Array(Schema.String),
  message: Schema.String
}) {}

/** The agent's errors, which `run` reports like its own. */
export { AgentConfigError, ProbeModuleError, UnsupportedTarget } from "../agent/Agent.ts"
