/**
 * `probescope doctor`: what a user checks on a machine before deploying the agent. It tests what the probes need by
 * asking the running kernel — a ring buffer map created, tiny programs calling `bpf_loop` and `bpf_probe_write_user`
 * given to the verifier, a tp_btf program and a sock_ops program attached and detached, a live uprobe round trip —
 * rather than trusting a kernel version (distributions backport features, and lockdown forbids some at any version),
 * then says per probe whether it will work and what it does without.
 */
import { Data, Effect, Option, Schedule, Schema, Stream } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Bpf } from "../kernel/Bpf.ts"
import { ownBpfFds } from "../kernel/BpfLive.ts"
import * as Lockdown from "../instrumentations/internal/Lockdown.ts"
import * as Binary from "../probe/Binary.ts"
import * as Probe from "../probe/Probe.ts"

/** The kernel features doctor probes, each named as its check. */
export const FEATURES = [
  "btf",
  "ringbuf",
  "bpf_loop",
  "uprobe-roundtrip",
  "uprobe_multi",
  "tracepoints",
  "cgroup",
  "bpf_probe_write_user"
] as const

export type Feature = (typeof FEATURES)[number]

export interface Check {
  readonly name: string
  readonly ok: boolean
  /** Whether a failure fails doctor: some probe, or process discovery, cannot work without it. */
  readonly required: boolean
  readonly detail: string
}

/** Whether one probe (or process discovery) will work here, and what it does without an optional feature. */
export interface ProbeVerdict {
  readonly name: string
  readonly works: boolean
  /** `works`, `works; <what is off>`, or `will not work: <what is missing>`. */
  readonly detail: string
  /** The required checks that failed. */
  readonly missing: ReadonlyArray<string>
  /** The optional features absent: the probe works without them, with less. */
  readonly degraded: ReadonlyArray<string>
}

export interface Report {
  readonly ok: boolean
  readonly checks: ReadonlyArray<Check>
  readonly probes: ReadonlyArray<ProbeVerdict>
}

const check = (name: string, ok: boolean, detail: string, required = true): Check => ({ name, ok, required, detail })

const readText = (file: string): Option.Option<string> => {
  try {
    return Option.some(fs.readFileSync(file, "utf8"))
  } catch {
    return Option.none()
  }
}

// ---------------------------------------------------------------------------------------------------------------
// What each probe needs
// ---------------------------------------------------------------------------------------------------------------

/** What is said of a probe when an optional feature is absent. */
const WITHOUT: Readonly<Record<string, string>> = {
  uprobe_multi: "one perf-event link per attach point (no uprobe_multi): detaching takes ~100 ms per link",
  bpf_probe_write_user: "header injection off: bpf_probe_write_user forbidden; same-host propagation still works"
}

export interface Needs {
  readonly required: ReadonlyArray<string>
  readonly optional: ReadonlyArray<string>
}

/** Every probe's object creates the `events` ring buffer and is attached by uprobes; only root-or-capabilities load. */
const UPROBE_PROBE: Needs = { required: ["privileges", "ringbuf", "uprobe-roundtrip"], optional: ["uprobe_multi"] }

/**
 * The built-in probes' needs, from their BPF C: the HTTP probes scan header maps with `bpf_loop`; the client writes
 * `traceparent` with `bpf_probe_write_user` when it may. Discovery (`--exe`, `--all-go`) watches exec and exit with
 * tp_btf programs, which need the kernel's BTF. A probe not listed (a `--probe` module's) gets `UPROBE_PROBE`.
 */
export const NEEDS: Readonly<Record<string, Needs>> = {
  go_context: UPROBE_PROBE,
  nethttp_server: { ...UPROBE_PROBE, required: [...UPROBE_PROBE.required, "bpf_loop"] },
  nethttp_client: {
    required: [...UPROBE_PROBE.required, "bpf_loop"],
    optional: ["bpf_probe_write_user", ...UPROBE_PROBE.optional]
  },
  discovery: { required: ["privileges", "ringbuf", "btf", "tracepoints"], optional: [] }
}

/** The verdict on one probe from the checks' outcomes (by check name; a check not run counts as failed). */
export const verdict = (name: string, needs: Needs, available: Readonly<Record<string, boolean>>): ProbeVerdict => {
  const missing = needs.required.filter((n) => available[n] !== true)
  const degraded = needs.optional.filter((n) => available[n] !== true)
  if (missing.length > 0) {
    return { name, works: false, detail: `will not work: needs ${missing.join(", ")}`, missing, degraded }
  }
  const notes = degraded.map((n) => WITHOUT[n] ?? `without ${n}`)
  return { name, works: true, detail: ["works", ...notes].join("; "), missing, degraded }
}

/** Verdicts for the given probes (in their order) and process discovery, from the checks. */
export const verdicts = (probes: ReadonlyArray<string>, checks: ReadonlyArray<Check>): Array<ProbeVerdict> => {
  const available = Object.fromEntries(checks.map((c) => [c.name, c.ok]))
  return [...probes, "discovery"].map((name) => verdict(name, NEEDS[name] ?? UPROBE_PROBE, available))
}

/** A check is required when a built-in probe or discovery needs it (optional features never fail doctor). */
const requiredChecks = new Set(Object.values(NEEDS).flatMap((n) => n.required))

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

// ---------------------------------------------------------------------------------------------------------------
// Feature probes
// ---------------------------------------------------------------------------------------------------------------

/** bpf/doctor_features.bpf.c: one program per feature; a load enables only the one being asked about. */
const FEATURE_OBJECT = "doctor_features"
const FEATURE_PROGRAMS = ["feature_bpf_loop", "feature_write_user", "feature_tp_btf", "feature_sock_ops"] as const
type FeatureProgram = (typeof FEATURE_PROGRAMS)[number]

const others = (keep?: FeatureProgram) => FEATURE_PROGRAMS.filter((p) => p !== keep)

/** Loads the feature object with only `program` (or none: maps only) enabled, in the caller's scope. */
const loadFeature = (program?: FeatureProgram) =>
  Effect.gen(function*() {
    const bpf = yield* Bpf
    const file = Probe.objectFile(FEATURE_OBJECT)
    return yield* bpf.load({ file, name: FEATURE_OBJECT, disablePrograms: others(program) })
  })

const errorText = (e: { readonly _tag: string; readonly message: string }) => `${e._tag}: ${e.message}`

/** The kernel's BTF: tp_btf programs (discovery) are typed by it, and CO-RE relocations resolve against it. */
export const btf = (exists: (file: string) => boolean = fs.existsSync): Check =>
  exists("/sys/kernel/btf/vmlinux")
    ? check("btf", true, "/sys/kernel/btf/vmlinux")
    : check("btf", false, "/sys/kernel/btf/vmlinux is absent: the kernel was built without CONFIG_DEBUG_INFO_BTF")

/** Loading the object with no program creates its maps, among them a BPF_MAP_TYPE_RINGBUF (kernel 5.8). */
const ringbuf: Effect.Effect<Check, never, Bpf> = Effect.scoped(loadFeature()).pipe(
  Effect.as(check("ringbuf", true, "BPF_MAP_TYPE_RINGBUF map created")),
  Effect.catch((e) => Effect.succeed(check("ringbuf", false, `ring buffer map not created: ${errorText(e)}`)))
)

/** A uprobe program calling `bpf_loop` (5.17) given to the verifier; it is never attached. */
const bpfLoop: Effect.Effect<Check, never, Bpf> = Effect.scoped(loadFeature("feature_bpf_loop")).pipe(
  Effect.as(check("bpf_loop", true, "a program calling bpf_loop passed the verifier")),
  Effect.catch((e) =>
    Effect.succeed(check("bpf_loop", false, `a program calling bpf_loop was refused: ${errorText(e)}`))
  )
)

/**
 * A program calling `bpf_probe_write_user` given to the verifier, which refuses it under kernel lockdown. It is only
 * loaded, never attached: nothing is written. Optional: the client probe then propagates on the same host only.
 */
const writeUser: Effect.Effect<Check, never, Bpf> = Effect.scoped(loadFeature("feature_write_user")).pipe(
  Effect.as(
    check("bpf_probe_write_user", true, "allowed: a program calling it passed the verifier (not attached)", false)
  ),
  Effect.catch((e) => {
    const why = Lockdown.writeUserSupport()
    const verifier = /verifier rejected the program: (.*)$/.exec(e.message)?.[1]
    const refused = verifier === undefined ? errorText(e) : `the verifier refused a program calling it ("${verifier}")`
    return Effect.succeed(check("bpf_probe_write_user", false, `forbidden: ${refused}; ${why.reason}`, false))
  })
)

/** A tp_btf program on sched:sched_process_exec attached and detached: what discovery does. */
const tracepoints: Effect.Effect<Check, never, Bpf> = Effect.scoped(Effect.gen(function*() {
  const obj = yield* loadFeature("feature_tp_btf")
  yield* obj.attachTracepoint({ program: "feature_tp_btf", category: "sched", name: "sched_process_exec" })
})).pipe(
  Effect.as(check("tracepoints", true, "tp_btf/sched_process_exec attached and detached")),
  Effect.catch((e) => Effect.succeed(check("tracepoints", false, `tp_btf/sched_process_exec: ${errorText(e)}`)))
)

/** The cgroup v2 mount point, from /proc/self/mountinfo (field 5 is the mount point, after " - " the type). */
export const cgroup2Mount = (mountinfo: string): Option.Option<string> => {
  const line = mountinfo.split("\n").find((l) => / - cgroup2 /.test(l))
  return line === undefined ? Option.none() : Option.fromNullishOr(line.split(" ")[4])
}

/** A step of the cgroup check failed; the addon's error is kept as the cause. */
class CgroupHookError extends Data.TaggedError("CgroupHookError")<{
  readonly message: string
  readonly cause: unknown
}> {}

const attempt = <A>(what: string, f: () => A) =>
  Effect.try({
    try: f,
    catch: (cause) =>
      new CgroupHookError({ message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause })
  })

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Cgroups left by a doctor that was killed mid-check (its pid is gone): empty, so removing them is safe. */
export const removeStaleCgroups = (mount: string): void => {
  let entries: Array<string>
  try {
    entries = fs.readdirSync(mount)
  } catch {
    return
  }
  for (const entry of entries) {
    const pid = /^probescope-doctor-(\d+)$/.exec(entry)?.[1]
    if (pid === undefined || alive(Number(pid))) continue
    try {
      fs.rmdirSync(path.join(mount, entry))
    } catch {
      // Still in use, or removed meanwhile: not ours to insist on.
    }
  }
}

/**
 * A sock_ops program loaded and attached (a BPF link) to a cgroup made for the check under the cgroup v2 mount, then
 * detached and the cgroup removed.
 */
const cgroupHooks: Effect.Effect<Check, never, Bpf> = Effect.gen(function*() {
  const mount = cgroup2Mount(Option.getOrElse(readText("/proc/self/mountinfo"), () => ""))
  if (Option.isNone(mount)) return check("cgroup", false, "no cgroup v2 mount in /proc/self/mountinfo", false)
  yield* Effect.sync(() => removeStaleCgroups(mount.value))
  const dir = path.join(mount.value, `probescope-doctor-${process.pid}`)
  return yield* Effect.scoped(Effect.gen(function*() {
    // Made first, so released last: the cgroup can only be removed once the link and the object are gone.
    yield* Effect.acquireRelease(
      attempt(`mkdir ${dir}`, () => fs.mkdirSync(dir)),
      () => Effect.sync(() => fs.rmdirSync(dir))
    )
    const obj = yield* loadFeature("feature_sock_ops")
    yield* obj.attachCgroup({ program: "feature_sock_ops", cgroup: dir })
    return check("cgroup", true, `sock_ops attached to a cgroup under ${mount.value} and detached`, false)
  }))
}).pipe(Effect.catch((e) => Effect.succeed(check("cgroup", false, errorText(e), false))))

/** Whether the kernel has `uprobe_multi` links (6.6), as the addon found at start. */
const uprobeMulti = (supported: boolean): Check =>
  supported
    ? check("uprobe_multi", true, "uprobe_multi links: one link per program and file, detached in one batch", false)
    : check("uprobe_multi", false, "no uprobe_multi links: one perf-event link per attach point (slow detach)", false)

// ---------------------------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------------------------

/** The built-in probes, in the order the Manager attaches them. */
const BUILTIN_PROBES = ["go_context", "nethttp_server", "nethttp_client"]

/** Every check, then a verdict per probe; the kernel ones are skipped, saying why, when the process lacks privileges. */
export const run = (probes: ReadonlyArray<string> = BUILTIN_PROBES): Effect.Effect<Report, never, Bpf> =>
  Effect.gen(function*() {
    const bpf = yield* Bpf
    const status = Option.getOrElse(readText("/proc/self/status"), () => "")
    const priv = privileges(status, process.geteuid?.() ?? -1)
    const checks: Array<Check> = [
      check("kernel", true, os.release(), false),
      check("libbpf", true, bpf.libbpfVersion, false),
      priv,
      btf()
    ]
    if (priv.ok) {
      checks.push(
        yield* ringbuf,
        yield* bpfLoop,
        yield* roundTrip,
        uprobeMulti(bpf.uprobeMulti),
        yield* tracepoints,
        yield* cgroupHooks,
        yield* writeUser
      )
    } else {
      for (const name of FEATURES.filter((f) => f !== "btf")) {
        checks.push(check(name, false, "skipped: needs the privileges above", requiredChecks.has(name)))
      }
    }
    const fixed = checks.map((c) => ({ ...c, required: requiredChecks.has(c.name) }))
    return { ok: fixed.every((c) => c.ok || !c.required), checks: fixed, probes: verdicts(probes, fixed) }
  })

const mark = (c: Check) => (c.ok ? "ok  " : c.required ? "FAIL" : "no  ")

/** The human table: checks (FAIL fails doctor, "no" is an optional feature absent), then one line per probe. */
export const formatTable = (report: Report): string => {
  const width = Math.max(...report.checks.map((c) => c.name.length))
  const lines = report.checks.map((c) => `${mark(c)}  ${c.name.padEnd(width)}  ${c.detail}`)
  if (report.probes.length > 0) {
    const pw = Math.max(...report.probes.map((p) => p.name.length))
    lines.push("", "probes")
    lines.push(...report.probes.map((p) => `${p.works ? "ok  " : "FAIL"}  ${p.name.padEnd(pw)}  ${p.detail}`))
  }
  const failed = report.checks.filter((c) => !c.ok && c.required).length
  lines.push("", report.ok ? "all required checks passed" : `${failed} required check(s) failed`)
  return lines.join("\n")
}
