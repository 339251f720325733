/** The `probescope/manager` entry point: the runtime checks first (see ../Guard.ts), then src/manager/index.ts. */
import "../Guard.ts"
export * from "../../manager/index.ts"
