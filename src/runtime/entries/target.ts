/** The `probescope/target` entry point: the runtime checks first (see ../Guard.ts), then src/target/index.ts. */
import "../Guard.ts"
export * from "../../target/index.ts"
