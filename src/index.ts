/**
 * probescope: eBPF auto-instrumentation for Go programs, as Effect layers.
 *
 * Layers, each depending only on those before it: the kernel binding (`Bpf`), the probe API (`Probe`, capabilities,
 * `Manifest`, `ProbeTest`), target analysis (`GoBinary`), discovery, the `Manager`, telemetry, and the built-in
 * instrumentations. See docs/architecture.md and docs/probe-api.md.
 */
// First: checks Node's version and that one copy of effect is loaded, before any module of effect runs.
import "./runtime/Guard.ts"

// kernel binding
export * as Bpf from "./kernel/Bpf.ts"
export * as BpfLive from "./kernel/BpfLive.ts"
export * as BpfTest from "./kernel/BpfTest.ts"

// probe API
export * as Binary from "./probe/Binary.ts"
export * as Capabilities from "./probe/Capabilities.ts"
export * as Ids from "./probe/Ids.ts"
export * as Manifest from "./probe/Manifest.ts"
export * as Probe from "./probe/Probe.ts"
export * as ProbeError from "./probe/ProbeError.ts"
export * as ProbeRegistry from "./probe/ProbeRegistry.ts"
export * as ProbeTest from "./probe/ProbeTest.ts"
export * as Sink from "./probe/Telemetry.ts"
export type { Target, TargetField, TargetFunction } from "./probe/Target.ts"
export * as TracingConfig from "./probe/TracingConfig.ts"

// target analysis
export * as GoBinary from "./target/GoBinary.ts"
export * as TargetErrors from "./target/Errors.ts"
export * as Offsets from "./target/Offsets.ts"

// discovery
export * as Discovery from "./discovery/Discovery.ts"
export * as Selector from "./discovery/Selector.ts"

// the agent: discovery, selection, analysis, resources, the Manager and telemetry as one layer
export * as Agent from "./agent/Agent.ts"

// manager
export * as Manager from "./manager/Manager.ts"
export * as TargetEvent from "./manager/TargetEvent.ts"

// telemetry
export * as KernelClock from "./telemetry/KernelClock.ts"
export * as ProcessResources from "./telemetry/ProcessResources.ts"
export * as Telemetry from "./telemetry/Telemetry.ts"
export * as TelemetryConfig from "./telemetry/TelemetryConfig.ts"

// instrumentations
export * as GoContext from "./instrumentations/GoContext.ts"
export * as NetHttpClient from "./instrumentations/NetHttpClient.ts"
export * as NetHttpServer from "./instrumentations/NetHttpServer.ts"
