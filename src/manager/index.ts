/**
 * The Manager and what it consumes.
 */
export * as Manager from "./Manager.ts"
export * as TargetEvent from "./TargetEvent.ts"
