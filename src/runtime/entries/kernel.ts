/**
 * `probescope/kernel`: the runtime checks first (see ../Guard.ts), then the `Bpf` service's modules and what the
 * running kernel offers (`KernelFacts`).
 */
import "../Guard.ts"
export * as Bpf from "../../kernel/Bpf.ts"
export * as BpfLive from "../../kernel/BpfLive.ts"
export * as BpfTest from "../../kernel/BpfTest.ts"
export * as KernelFacts from "../../kernel/KernelFacts.ts"
