/** The `probescope/probe` entry point: the runtime checks first (see ../Guard.ts), then src/probe/index.ts. */
import "../Guard.ts"
export * from "../../probe/index.ts"
