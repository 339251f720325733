/**
 * The detected part of a process's resource: its host (`host.name`, `host.id`, `os.type`), its container and pod
 * (`container.id`, `k8s.pod.uid`, from its cgroup) and, when turned on, its arguments (`process.command_args`).
 * The attribute names are OpenTelemetry's semantic conventions; a Collector's `k8sattributes` processor joins pod
 * metadata on `k8s.pod.uid` and `container.id`.
 *
 * `attributes` is pure; `host` reads the machine once.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import type { AttributeValue } from "../ProcessResources.ts"

/** What is known of the host the agent runs on. */
export interface HostInfo {
  readonly name: string
  /** /etc/machine-id (systemd's stable host id), absent when the file is. */
  readonly id?: string
}

/** What is known of one process beyond its executable. */
export interface ProcessFacts {
  readonly containerId?: string
  readonly podUid?: string
  /** argv, only when `process.command_args` is turned on. */
  readonly args?: ReadonlyArray<string>
}

/** The detected attributes of a process on a host. */
export const attributes = (host: HostInfo, facts: ProcessFacts): Record<string, AttributeValue> => ({
  "host.name": host.name,
  ...(host.id === undefined ? {} : { "host.id": host.id }),
  "os.type": "linux",
  ...(facts.containerId === undefined ? {} : { "container.id": facts.containerId }),
  ...(facts.podUid === undefined ? {} : { "k8s.pod.uid": facts.podUid }),
  ...(facts.args === undefined ? {} : { "process.command_args": [...facts.args] })
})

/** The machine id: 32 hex digits on its own line; anything else is not one. */
export const parseMachineId = (text: string): string | undefined => {
  const id = text.trim()
  return /^[0-9a-f]{32}$/.test(id) ? id : undefined
}

const readMachineId = (): string | undefined => {
  // dbus's copy is the same id on hosts where systemd's file is absent (some minimal images)
  for (const file of ["/etc/machine-id", "/var/lib/dbus/machine-id"]) {
    try {
      const id = parseMachineId(Fs.readFileSync(file, "utf8"))
      if (id !== undefined) return id
    } catch {
      // try the next one
    }
  }
  return undefined
}

/** This host, read now. */
export const host = (): HostInfo => {
  const id = readMachineId()
  return { name: Os.hostname(), ...(id === undefined ? {} : { id }) }
}
