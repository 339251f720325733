/**
 * Tracepoint ids for perf-event tracepoint attach. The kernel only publishes them in tracefs; when tracefs is not
 * mounted (as on this project's machines) we read the id from a tracefs mounted in a private mount namespace of a
 * short-lived `unshare` child, so the host's mounts are never touched. raw_tp and tp_btf programs need none of this.
 */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"

const mountedRoots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]

const validName = /^[A-Za-z0-9_]+$/

/** The id of tracepoint `category:name`, or a reason it could not be found. */
export const tracepointId = (category: string, name: string): number | string => {
  if (!validName.test(category) || !validName.test(name)) return `invalid tracepoint name ${category}:${name}`
  for (const root of mountedRoots) {
    try {
      return parseId(readFileSync(`${root}/events/${category}/${name}/id`, "utf8"))
    } catch {
      // not mounted here, or no such tracepoint
    }
  }
  try {
    const script = `mount -t tracefs nodev /sys/kernel/tracing && cat /sys/kernel/tracing/events/${category}/${name}/id`
    const out = execFileSync("unshare", ["--mount", "--propagation", "private", "sh", "-c", script], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 5_000
    })
    return parseId(out)
  } catch (cause) {
    const stderr = (cause as { stderr?: string }).stderr?.trim()
    return `no tracepoint ${category}:${name} (tracefs: ${stderr || String(cause)})`
  }
}

const parseId = (text: string): number => {
  const id = Number.parseInt(text.trim(), 10)
  if (!Number.isSafeInteger(id) || id < 0) throw new Error(`bad tracepoint id ${text}`)
  return id
}
