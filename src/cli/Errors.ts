/** Errors the CLI itself raises (the layers below have their own). */
import { Schema } from "effect"

/** A process or executable the user named that no built-in probe can instrument, with each probe's reason. */
export class UnsupportedTarget extends Schema.TaggedError<UnsupportedTarget>()("UnsupportedTarget", {
  message: Schema.String
}) {}

/** The command line asks for nothing, or for something contradictory. */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

/** `run` lacks capabilities it cannot work without; `missing` lists every one it would use and lacks. */
export class InsufficientPrivileges extends Schema.TaggedError<InsufficientPrivileges>()("InsufficientPrivileges", {
  missing: Schema.Array(Schema.String),
  message: Schema.String
}) {}

/** An environment variable the agent reads is unusable. */
export class AgentConfigError extends Schema.TaggedError<AgentConfigError>()("AgentConfigError", {
  variable: Schema.String,
  message: Schema.String
}) {}
