/**
 * `probescope doctor`: what a user checks on a machine before deploying the agent. Every check reports a detail a
 * human can act on; the live round trip proves the whole kernel path (load, attach, event, detach, nothing left).
 */
import { Effect, Option, Schedule, Schema, Stream } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Bpf } from "../kernel/Bpf.ts"
import { ownBpfFds } from "../kernel/BpfLive.ts"
import * as Lockdown from "../instrumentations/internal/Lockdown.ts"
import * as Binary from "../probe/Binary.ts"
import * as Probe from "../probe/Probe.ts"

export interface Check {
  readonly name: string
  readonly ok: boolean
  readonly detail: string
}

export interface Report {
  readonly ok: boolean
  readonly checks: ReadonlyArray<Check>
}

const check = (name: string, ok: boolean, detail: string): Check => ({ name, ok, detail })

const readText = (file: string): Option.Option<string> => {
  try {
    return Option.some(fs.readFileSync(file, "utf8"))
  } catch {
    return Option.none()
  }
}

/** Ring buffers need 5.8; BTF-typed uprobes and BPF_RB_* flags are older than that. */
const MIN_KERNEL: readonly [number, number] = [5, 8]

export const kernelVersion = (release: string): Check => {
  const m = /^(\d+)\.(\d+)/.exec(release)
  if (!m) return check("kernel", false, `cannot parse kernel release "${release}"`)
  const [major, minor] = [Number(m[1]), Number(m[2])]
  const ok = major > MIN_KERNEL[0] || (major === MIN_KERNEL[0] && minor >= MIN_KERNEL[1])
  return check("kernel", ok, ok ? release : `${release} is older than ${MIN_KERNEL.join(".")} (BPF ring buffer)`)
}

/** The capabilities (linux/capability.h) the agent uses, by bit. */
const CAPABILITIES = {
  /** Read an executable whose mode does not let the agent's user read it. */
  CAP_DAC_READ_SEARCH: 2n,
  /** Read /proc/PID/exe (and maps) of another user's process: ptrace read access. */
  CAP_SYS_PTRACE: 19n,
  /** Before 5.8 the only way to load BPF and open perf events; still covers both. */
  CAP_SYS_ADMIN: 21n,
  /** Raise RLIMIT_MEMLOCK, which bounds BPF maps before 5.11 (memcg accounting since). */
  CAP_SYS_RESOURCE: 24n,
  /** Open uprobe and tracepoint perf events. */
  CAP_PERFMON: 38n,
  /** Load BPF programs and create maps. */
  CAP_BPF: 39n
} as const

export type Capability = keyof typeof CAPABILITIES

/** The effective capability set from /proc/PID/status (`CapEff`); none when the line is absent. */
export const effectiveCapabilities = (status: string): bigint => {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)
  return m ? BigInt(`0x${m[1]}`) : 0n
}

const has = (caps: bigint, c: Capability) => ((caps >> CAPABILITIES[c]) & 1n) === 1n

/** Loading BPF and attaching uprobes: CAP_BPF + CAP_PERFMON (kernel >= 5.8), or CAP_SYS_ADMIN. */
const kernelCapsMissing = (caps: bigint): Array<Capability> =>
  has(caps, "CAP_SYS_ADMIN") ? [] : (["CAP_BPF", "CAP_PERFMON"] as const).filter((c) => !has(caps, c))

/** Root, or CAP_BPF + CAP_PERFMON (kernel >= 5.8), or CAP_SYS_ADMIN, from /proc/self/status's CapEff. */
export const privileges = (status: string, euid: number): Check => {
  const missing = kernelCapsMissing(effectiveCapabilities(status))
  if (missing.length === 0) return check("privileges", true, euid === 0 ? "root" : "CAP_BPF + CAP_PERFMON")
  return check(
    "privileges",
    false,
    `missing ${missing.join(" and ")}: run as root or grant them (setcap cap_bpf,cap_perfmon+ep or a container's capabilities)`
  )
}

/** What `probescope run` is about to do that needs more than loading BPF. */
export interface AgentNeeds {
  /** A selected process belongs to another user: its /proc/PID/exe needs ptrace read access. */
  readonly otherUsers: boolean
  /** The kernel bounds BPF maps by RLIMIT_MEMLOCK (before 5.11) and the limit is not unlimited. */
  readonly memlock: boolean
}

export interface AgentPrivileges {
  /** Every capability the agent would use and lacks, those it cannot start without first. */
  readonly missing: ReadonlyArray<Capability>
  /** Whether the agent cannot work at all without them (else it would skip what it cannot read). */
  readonly fatal: boolean
}

/**
 * What `run` lacks, from the same CapEff `doctor` reads. CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH are only fatal for a
 * process of another user named by `--pid`; with `--exe`/`--all-go` the agent skips what it cannot read.
 */
export const agentPrivileges = (status: string, needs: AgentNeeds): AgentPrivileges => {
  const caps = effectiveCapabilities(status)
  const kernel = kernelCapsMissing(caps)
  const memlock = needs.memlock && !has(caps, "CAP_SYS_RESOURCE") ? (["CAP_SYS_RESOURCE"] as const) : []
  const proc = (["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"] as const).filter((c) => !has(caps, c))
  return {
    missing: [...kernel, ...memlock, ...proc],
    fatal: kernel.length > 0 || memlock.length > 0 || (needs.otherUsers && proc.includes("CAP_SYS_PTRACE"))
  }
}

/**
 * Whether BPF maps count against RLIMIT_MEMLOCK: kernels before 5.11 charge them there (since, to the memory cgroup),
 * which matters only while the soft limit (from /proc/self/limits) is not unlimited.
 */
export const memlockBound = (release: string, limits: string): boolean => {
  const m = /^(\d+)\.(\d+)/.exec(release)
  const old = m !== null && (Number(m[1]) < 5 || (Number(m[1]) === 5 && Number(m[2]) < 11))
  const line = /^Max locked memory\s+(\S+)/m.exec(limits)
  return old && line !== null && line[1] !== "unlimited"
}

/** The one line `run` fails with when it lacks privileges. */
export const privilegesMessage = (missing: ReadonlyArray<Capability>): string =>
  `missing capabilities ${missing.join(", ")}: run as root (sudo), or grant them to the agent ` +
  "(systemd AmbientCapabilities=, docker run --cap-add); `probescope doctor` checks the machine"

const pmu = (name: "uprobe" | "tracepoint"): Check => {
  const file = `/sys/bus/event_source/devices/${name}/type`
  return Option.match(readText(file), {
    onNone: () => check(name, false, `${file} is absent: the kernel lacks ${name} perf events (CONFIG_${name.toUpperCase()}_EVENTS)`),
    onSome: (t) => check(name, true, `perf PMU type ${t.trim()}`)
  })
}

const btf = (): Check =>
  fs.existsSync("/sys/kernel/btf/vmlinux")
    ? check("btf", true, "/sys/kernel/btf/vmlinux")
    : check("btf", false, "/sys/kernel/btf/vmlinux is absent: the kernel was built without CONFIG_DEBUG_INFO_BTF")

/** Lockdown decides whether the client probe may write `traceparent` into outgoing requests. Informational. */
const lockdown = (): Check => {
  const support = Lockdown.writeUserSupport()
  return check(
    "lockdown",
    true,
    support.permitted
      ? `${support.reason}: traceparent injection allowed`
      : `${support.reason}: no traceparent injection (bpf_probe_write_user forbidden); same-host context only`
  )
}

/** The shared library that holds `getrusage`, which `process.resourceUsage()` calls every time: our trigger. */
const libcPath = (): Option.Option<string> =>
  Option.flatMap(readText("/proc/self/maps"), (maps) => {
    const line = maps.split("\n").find((l) => /\/libc\.so\.6$|\/libc-[\d.]+\.so$/.test(l))
    return line ? Option.some(line.slice(line.indexOf("/"))) : Option.none()
  })

/** Every program, map, link and perf-event fd this process holds: nothing may remain after the round trip. */
const ownFdTotal = Effect.sync(() => {
  const fds = ownBpfFds()
  return fds.progs + fds.maps + fds.links + fds.perfEvents
})

/** `struct doctor_event` of bpf/doctor.bpf.c. */
export const DoctorEvent = Binary.struct({
  /** Thread id. */
  pid: Binary.u32,
  /** Process id. */
  tgid: Binary.u32,
  /** The Go ABI's first integer argument (RAX). */
  arg1: Binary.u64,
  cookie: Binary.u64,
  ktimeNs: Binary.u64
})

const decodeDoctorEvent = Schema.decodeUnknownOption(Binary.schema(DoctorEvent))

/**
 * Load the doctor object, attach a uprobe to libc's `getrusage` in this process, call it, receive the event through
 * the ring buffer, detach, and confirm no link fd of ours remains.
 */
export const roundTrip: Effect.Effect<Check, never, Bpf> = Effect.gen(function*() {
  const bpf = yield* Bpf
  const libc = libcPath()
  if (Option.isNone(libc)) return check("uprobe-roundtrip", false, "libc not found in /proc/self/maps")
  const fdsBefore = yield* ownFdTotal
  const cookie = BigInt(process.pid) * 1000n + BigInt(Date.now() % 1000)
  const received = yield* Effect.scoped(Effect.gen(function*() {
    const obj = yield* bpf.load({ file: Probe.objectFile("doctor"), constants: { doctor_cookie: cookie, ps_wakeup_bytes: 0n } })
    yield* obj.attachUprobe({ program: "doctor_uprobe", binary: libc.value, symbol: "getrusage", pid: process.pid })
    const rb = yield* obj.ringBuffer("events")
    // Keep calling until the event arrives: the first call may race the poll registration.
    const trigger = Effect.sync(() => process.resourceUsage()).pipe(Effect.repeat(Schedule.spaced("20 millis")), Effect.forkScoped)
    yield* trigger
    const first = yield* rb.records.pipe(
      Stream.map((r) => decodeDoctorEvent(r)),
      Stream.filter(Option.isSome),
      Stream.map((r) => r.value),
      Stream.filter((r) => r.tgid === process.pid && r.cookie === cookie),
      Stream.runHead,
      Effect.timeoutOption("3 seconds")
    )
    return Option.flatten(first)
  }))
  const fdsAfter = yield* ownFdTotal
  if (Option.isNone(received)) return check("uprobe-roundtrip", false, "no event within 3 s after calling the probed function")
  if (fdsAfter > fdsBefore) {
    return check("uprobe-roundtrip", false, `${fdsAfter - fdsBefore} BPF program/map/link fd(s) left open after detach`)
  }
  return check("uprobe-roundtrip", true, `event from pid ${received.value.tgid} via ${path.basename(libc.value)}:getrusage, detached, nothing left`)
}).pipe(
  Effect.catch((e) => Effect.succeed(check("uprobe-roundtrip", false, `${e._tag}: ${e.message}`)))
)

/** All checks; the kernel ones are skipped with a reason when the process lacks privileges. */
export const run: Effect.Effect<Report, never, Bpf> = Effect.gen(function*() {
  const bpf = yield* Bpf
  const status = Option.getOrElse(readText("/proc/self/status"), () => "")
  const priv = privileges(status, process.geteuid?.() ?? -1)
  const checks: Array<Check> = [
    kernelVersion(os.release()),
    btf(),
    pmu("uprobe"),
    pmu("tracepoint"),
    priv,
    check("libbpf", true, bpf.libbpfVersion),
    lockdown()
  ]
  checks.push(
    priv.ok ? yield* roundTrip : check("uprobe-roundtrip", false, "skipped: needs the privileges above")
  )
  return { ok: checks.every((c) => c.ok), checks }
})

export const formatTable = (report: Report): string => {
  const width = Math.max(...report.checks.map((c) => c.name.length))
  const lines = report.checks.map((c) => `${c.ok ? "ok  " : "FAIL"}  ${c.name.padEnd(width)}  ${c.detail}`)
  lines.push("", report.ok ? "all checks passed" : `${report.checks.filter((c) => !c.ok).length} check(s) failed`)
  return lines.join("\n")
}
