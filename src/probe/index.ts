/**
 * The probe API: defining probes (`Probe`), their capabilities, manifests, sampling, binary records (checked against
 * BTF), and the test kit (`ProbeRegistry` is deprecated: the Manager composes the probes in its context).
 */
export * as Binary from "./Binary.ts"
export * as Capabilities from "./Capabilities.ts"
export * as Ids from "./Ids.ts"
export * as Instruments from "./Instruments.ts"
export * as Manifest from "./Manifest.ts"
export * as Probe from "./Probe.ts"
export * as ProbeError from "./ProbeError.ts"
export * as ProbeRegistry from "./ProbeRegistry.ts"
export * as Target from "./Target.ts"
export * as Telemetry from "./Telemetry.ts"
export * as TracingConfig from "./TracingConfig.ts"
/** Test kit (fake targets, capturing sink, driven target source, mock probes); pairs with src/kernel/BpfTest.ts. */
export * as ProbeTest from "./ProbeTest.ts"
