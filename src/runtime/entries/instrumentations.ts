/** `probescope/instrumentations`: the runtime checks first (see ../Guard.ts), then src/instrumentations/index.ts. */
import "../Guard.ts"
export * from "../../instrumentations/index.ts"
