/** The `probescope/telemetry` entry point: the runtime checks first (see ../Guard.ts), then src/telemetry/index.ts. */
import "../Guard.ts"
export * from "../../telemetry/index.ts"
