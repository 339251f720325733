/** The agent's own errors (the layers below it have theirs). */
import { Schema } from "effect"

/** A process or executable the user named that none of the given instrument probes can instrument, with reasons. */
export class UnsupportedTarget extends Schema.TaggedError<UnsupportedTarget>()("UnsupportedTarget", {
  message: Schema.String
}) {}

/** An environment variable the agent reads is unusable. */
export class AgentConfigError extends Schema.TaggedError<AgentConfigError>()("AgentConfigError", {
  variable: Schema.String,
  message: Schema.String
}) {}

/** A `--probe` module (or one a config file lists) that cannot be loaded or exports nothing usable. */
export class ProbeModuleError extends Schema.TaggedError<ProbeModuleError>()("ProbeModuleError", {
  module: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}
