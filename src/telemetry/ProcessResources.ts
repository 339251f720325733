/**
 * One OpenTelemetry resource per target process. The caller (the manager, which knows the process) registers a pid
 * with what it learned about the executable; spans from that pid are then exported under that resource.
 */
import { resourceFromAttributes, type Resource } from "@opentelemetry/resources"
import { Context, Effect, Layer } from "effect"
import pkg from "../../package.json" with { type: "json" }

/** probescope's own version (the instrumentation scope and `telemetry.distro.version`). */
export const version: string = pkg.version

/** A resource attribute's value: `process.command_args` is a list of strings. */
export type AttributeValue = string | number | Array<string>

/** What the caller knows about a process. */
export interface ProcessInfo {
  /** Absolute path of the executable. */
  readonly exe: string
  /** Go toolchain version without the "go" prefix, e.g. "1.24.3"; "" for a process that is not Go (its resource then
   * names no runtime). */
  readonly goVersion: string
  /** The process's own service name (e.g. OTEL_SERVICE_NAME from its environment); wins over the agent's. */
  readonly serviceName?: string
  /** Extra resource attributes for this process only (e.g. its own OTEL_RESOURCE_ATTRIBUTES); win over the agent's. */
  readonly attributes?: Readonly<Record<string, string>>
  /**
   * What was detected about the process and its host (`container.id`, `k8s.pod.uid`, `host.name`, `host.id`,
   * `os.type`, `process.command_args`): the lowest precedence, so OTEL_RESOURCE_ATTRIBUTES can correct it.
   */
  readonly detected?: Readonly<Record<string, AttributeValue>>
}

/** The agent-wide inputs: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`. */
export interface ResourceDefaults {
  readonly serviceName: string | undefined
  readonly attributes: Readonly<Record<string, string>>
}

const basename = (path: string) => path.slice(path.lastIndexOf("/") + 1)

/**
 * The resource attributes of one process. Precedence, lowest first: what was detected (container, host, arguments),
 * the process attributes the caller gives (pid, executable, runtime), the agent's
 * OTEL_RESOURCE_ATTRIBUTES, the process's own attributes; `service.name` is the process's own name, else the agent's
 * OTEL_SERVICE_NAME, else `service.name` from the attribute lists, else the executable's basename.
 */
export const processAttributes = (
  pid: number,
  info: ProcessInfo,
  defaults: ResourceDefaults
): Record<string, AttributeValue> => {
  const merged: Record<string, AttributeValue> = {
    ...info.detected,
    "process.pid": pid,
    "process.executable.path": info.exe,
    "process.executable.name": basename(info.exe),
    // A Go program's runtime is Go; of a native one (C, Rust, an interpreter) nothing reliable is known: none.
    ...(info.goVersion === "" ? {} : { "process.runtime.name": "go", "process.runtime.version": info.goVersion }),
    "telemetry.distro.name": "probescope",
    "telemetry.distro.version": version,
    ...defaults.attributes,
    ...info.attributes
  }
  merged["service.name"] = info.serviceName ?? defaults.serviceName ?? info.attributes?.["service.name"] ??
    defaults.attributes["service.name"] ?? basename(info.exe)
  return merged
}

/** Attributes for spans whose pid was never registered: all we know is the pid. */
export const unknownProcessAttributes = (pid: number, defaults: ResourceDefaults): Record<string, string | number> => ({
  "process.pid": pid,
  "telemetry.distro.name": "probescope",
  "telemetry.distro.version": version,
  ...defaults.attributes,
  "service.name": defaults.serviceName ?? defaults.attributes["service.name"] ?? "unknown_service"
})

/**
 * Per-process resources. `resourceFor` is synchronous and returns the same object for a pid until it is registered
 * again: OTLP exporters group spans by resource identity.
 */
export class ProcessResources extends Context.Service<ProcessResources, {
  readonly register: (pid: number, info: ProcessInfo) => Effect.Effect<void>
  readonly unregister: (pid: number) => Effect.Effect<void>
  readonly resourceFor: (pid: number) => Resource
  readonly attributesFor: (pid: number) => Readonly<Record<string, AttributeValue>>
}>()("probescope/telemetry/ProcessResources") {}

/** Builds the service from agent-wide defaults. */
export const make = (defaults: ResourceDefaults): ProcessResources["Service"] => {
  const byPid = new Map<number, { readonly resource: Resource; readonly attributes: Record<string, AttributeValue> }>()
  const entry = (pid: number) => {
    let e = byPid.get(pid)
    if (e === undefined) {
      const attributes = unknownProcessAttributes(pid, defaults)
      e = { resource: resourceFromAttributes(attributes), attributes }
      byPid.set(pid, e)
    }
    return e
  }
  return ProcessResources.of({
    register: (pid, info) =>
      Effect.sync(() => {
        const attributes = processAttributes(pid, info, defaults)
        byPid.set(pid, { resource: resourceFromAttributes(attributes), attributes })
      }),
    unregister: (pid) => Effect.sync(() => void byPid.delete(pid)),
    resourceFor: (pid) => entry(pid).resource,
    attributesFor: (pid) => entry(pid).attributes
  })
}

/** The service with the given defaults. */
export const layerWith = (defaults: ResourceDefaults): Layer.Layer<ProcessResources> =>
  Layer.sync(ProcessResources, () => make(defaults))
