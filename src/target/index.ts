/**
 * Target analysis: Go executables as probes see them. See docs/targets.md.
 */
export * as Errors from "./Errors.ts"
export * as Fields from "./Fields.ts"
export * as GoBinary from "./GoBinary.ts"
export * as NativeBinary from "./NativeBinary.ts"
export * as Offsets from "./Offsets.ts"
export * as ProcessTarget from "./ProcessTarget.ts"
