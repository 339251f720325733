/**
 * Whether this kernel lets BPF programs call `bpf_probe_write_user`, which the client probe needs to write the
 * `traceparent` header into an outgoing request. Kernel lockdown (integrity or confidentiality) forbids it: the
 * verifier then rejects any program using the helper ("cannot use helper bpf_probe_write_user"), so the variant
 * with it must not even be loaded.
 *
 * Sync and cheap, because a probe's `disablePrograms` and manifest are computed when it is defined.
 */
import * as fs from "node:fs"
import * as zlib from "node:zlib"

/** The answer and the evidence it rests on (shown to the user once). */
export interface WriteUserSupport {
  readonly permitted: boolean
  readonly reason: string
}

const read = (path: string): string | undefined => {
  try {
    return fs.readFileSync(path, "utf8")
  } catch {
    return undefined
  }
}

/** CAP_SYS_ADMIN's bit in /proc/self/status `CapEff`. */
const CAP_SYS_ADMIN = 21n

/**
 * Decide from the agent's own capabilities, then the lockdown file, the kernel command line, and the kernel config,
 * in that order. Even without lockdown the verifier gives `bpf_probe_write_user` only to a loader with CAP_SYS_ADMIN:
 * an agent run with just CAP_BPF and CAP_PERFMON (as deploy/ does) must not load that variant either.
 */
export const detect = (files: {
  readonly lockdown?: string | undefined
  readonly cmdline?: string | undefined
  readonly config?: string | undefined
  /** /proc/self/status; absent: capabilities are not checked. */
  readonly status?: string | undefined
}): WriteUserSupport => {
  const capEff = files.status === undefined ? undefined : /^CapEff:\s*([0-9a-f]+)$/m.exec(files.status)?.[1]
  if (capEff !== undefined && ((BigInt(`0x${capEff}`) >> CAP_SYS_ADMIN) & 1n) === 0n) {
    return { permitted: false, reason: "the agent lacks CAP_SYS_ADMIN, which bpf_probe_write_user needs" }
  }
  if (files.lockdown !== undefined) {
    const mode = /\[(\w+)\]/.exec(files.lockdown)?.[1] ?? files.lockdown.trim()
    return mode === "none" ?
      { permitted: true, reason: "kernel lockdown is none" } :
      { permitted: false, reason: `kernel lockdown is ${mode}` }
  }
  const arg = files.cmdline === undefined ? undefined : /(?:^|\s)lockdown=(\w+)/.exec(files.cmdline)?.[1]
  if (arg === "integrity" || arg === "confidentiality") {
    return { permitted: false, reason: `kernel booted with lockdown=${arg}` }
  }
  if (files.config !== undefined) {
    const forced = /^CONFIG_LOCK_DOWN_KERNEL_FORCE_(INTEGRITY|CONFIDENTIALITY)=y$/m.exec(files.config)?.[1]
    if (forced !== undefined) {
      return { permitted: false, reason: `kernel is built to force lockdown (${forced.toLowerCase()})` }
    }
  }
  return { permitted: true, reason: "no kernel lockdown found" }
}

let cached: WriteUserSupport | undefined

/** `detect` on this machine's /sys/kernel/security/lockdown, /proc/cmdline and /proc/config.gz (cached). */
export const writeUserSupport = (): WriteUserSupport => {
  if (cached === undefined) {
    let config: string | undefined
    try {
      config = zlib.gunzipSync(fs.readFileSync("/proc/config.gz")).toString("utf8")
    } catch {
      config = undefined
    }
    cached = detect({
      lockdown: read("/sys/kernel/security/lockdown"),
      cmdline: read("/proc/cmdline"),
      config,
      status: read("/proc/self/status")
    })
  }
  return cached
}
