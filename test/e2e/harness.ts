/**
 * What the end-to-end and reliability suites share: child processes with their output kept, the agent's CLI and
 * environment, the example service's programs, and the checks that the agent left nothing in the kernel.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { assert } from "@effect/vitest"
import { Duration, Effect, Schedule, Schema } from "effect"
import { kernelObjects } from "../../src/kernel/BpfLive.ts"

export const root = path.resolve(import.meta.dirname, "../..")
export const cli = path.join(root, "bin", "probescope")

/** A child process, a helper or the kernel did not do what the test waits for. */
export class E2eError extends Schema.TaggedError<E2eError>()("E2eError", { message: Schema.String }) {}

/** How a child process ended. */
export interface ExitStatus {
  readonly code: number | null
  readonly signal: string | null
}

/** A spawned process whose stdout and stderr are kept; killed (SIGKILL) when the test's scope closes. */
export interface Proc {
  readonly child: ChildProcess
  readonly pid: number
  readonly stdout: () => string
  readonly stderr: () => string
  /** The first match of `pattern` in the stream, waiting for it; fails when the process exits first. */
  readonly line: (
    stream: "stdout" | "stderr",
    pattern: RegExp,
    timeout?: Duration.Input
  ) => Effect.Effect<RegExpExecArray, E2eError>
  /** Resolves when the process has exited. */
  readonly exit: (timeout?: Duration.Input) => Effect.Effect<ExitStatus, E2eError>
}

export const spawnProc = (file: string, args: ReadonlyArray<string>, env?: NodeJS.ProcessEnv) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(file, args, { env: env ?? process.env, stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      let err = ""
      child.stdout!.on("data", (b: Buffer) => void (out += b.toString()))
      child.stderr!.on("data", (b: Buffer) => void (err += b.toString()))
      const done = new Promise<ExitStatus>((resolve) =>
        child.once("exit", (code, signal) => resolve({ code, signal }))
      )
      const exited = () => child.exitCode !== null || child.signalCode !== null
      const describeExit = () =>
        `${path.basename(file)} exited (${child.exitCode ?? child.signalCode}); stderr:\n${err}`
      const proc: Proc = {
        child,
        pid: child.pid!,
        stdout: () => out,
        stderr: () => err,
        line: (stream, pattern, timeout = "60 seconds") =>
          Effect.suspend(() => {
            const m = pattern.exec(stream === "stdout" ? out : err)
            if (m !== null) return Effect.succeed(m)
            return Effect.fail(new E2eError({ message: exited() ? describeExit() : "not yet" }))
          }).pipe(
            Effect.retry({ while: (e) => e.message === "not yet", schedule: Schedule.spaced("25 millis") }),
            Effect.timeoutOrElse({
              duration: timeout,
              orElse: () => Effect.fail(new E2eError({ message: `no ${pattern} from ${file}; stderr:\n${err}` }))
            })
          ),
        exit: (timeout = "60 seconds") =>
          Effect.promise(() => done).pipe(
            Effect.timeoutOrElse({
              duration: timeout,
              orElse: () => Effect.fail(new E2eError({ message: `${file} did not exit; stderr:\n${err}` }))
            })
          )
      }
      return proc
    }),
    (proc) =>
      Effect.promise(async () => {
        if (proc.child.exitCode !== null || proc.child.signalCode !== null) return
        const gone = new Promise((resolve) => proc.child.once("exit", resolve))
        proc.child.kill("SIGKILL")
        await gone
      })
  )

/** The environment the agent runs with: ours minus every OTEL_/PROBESCOPE_ variable, plus `extra`. */
export const agentEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => ({
  ...Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("OTEL_") && !k.startsWith("PROBESCOPE_"))
  ),
  ...extra
})

/** Starts a program of the example service and waits for its "listening on <addr>" line. */
export const startService = (exe: string, args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const proc = yield* spawnProc(exe, ["-addr", "127.0.0.1:0", ...args])
    const addr = (yield* proc.line("stdout", /^listening on (\S+)$/m, "30 seconds"))[1]!
    return { ...proc, addr, port: Number(addr.split(":").at(-1)) }
  })

/** The agent logs this once every probe that applies to `pid` is attached. */
export const attachedLine = (pid: number) => new RegExp(`pid ${pid}: attached (\\d+) probe\\(s\\): (.+)$`, "m")

export const get = (url: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(30_000) })
    await res.arrayBuffer()
    return res.status
  })

/** Runs the CLI to completion. */
export const runCli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.scoped(Effect.gen(function*() {
    const proc = yield* spawnProc(cli, args, agentEnv(env))
    const exit = yield* proc.exit("120 seconds")
    return { ...exit, stdout: proc.stdout(), stderr: proc.stderr() }
  }))

/** Ids of the BPF programs, links and maps a process holds, from its fds' fdinfo. */
export const bpfIdsOf = (pid: number) => {
  const ids = { progs: new Set<number>(), links: new Set<number>(), maps: new Set<number>() }
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let info: string
    try {
      const target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`)
      if (!target.startsWith("anon_inode:bpf")) continue
      info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8")
    } catch {
      continue
    }
    const field = (name: string) => {
      const m = new RegExp(`^${name}:\\s+(\\d+)$`, "m").exec(info)
      return m === null ? undefined : Number(m[1])
    }
    const link = field("link_id")
    const prog = field("prog_id")
    const map = field("map_id")
    if (link !== undefined) ids.links.add(link)
    else if (prog !== undefined) ids.progs.add(prog)
    else if (map !== undefined) ids.maps.add(map)
  }
  return ids
}

/** Every program, link and map id in the kernel (any process). */
export const kernelIds = Effect.promise(async () => {
  const { links, programs } = await kernelObjects()
  const maps = JSON.parse(execFileSync("bpftool", ["-j", "map", "show"], { maxBuffer: 64 << 20 }).toString() || "[]")
  return {
    progs: new Set(programs.map((p) => p.id)),
    links: new Set(links.map((l) => l.id)),
    maps: new Set((maps as Array<{ id: number }>).map((m) => m.id))
  }
})

export type Ids = ReturnType<typeof bpfIdsOf>

/** Which of `ours` are still in the kernel. */
export const remaining = (ours: Ids, kernel: Ids) => ({
  progs: [...ours.progs].filter((id) => kernel.progs.has(id)),
  links: [...ours.links].filter((id) => kernel.links.has(id)),
  maps: [...ours.maps].filter((id) => kernel.maps.has(id))
})

/**
 * Waits until none of the agent's objects remain. The kernel frees programs and maps after an RCU grace period, so
 * "gone" can lag the exit by a moment. Other tests may load BPF objects at the same time, so only the ids the agent
 * itself held are compared, not whole listings.
 */
export const assertReleased = (ours: Ids) =>
  kernelIds.pipe(
    Effect.map((kernel) => remaining(ours, kernel)),
    Effect.repeat({
      until: (r) => r.progs.length + r.links.length + r.maps.length === 0,
      schedule: Schedule.spaced("100 millis")
    }),
    Effect.timeoutOrElse({ duration: "15 seconds", orElse: () => Effect.map(kernelIds, (k) => remaining(ours, k)) }),
    Effect.tap((left) => Effect.sync(() => assert.deepStrictEqual(left, { progs: [], links: [], maps: [] })))
  )

/** While the agent runs: the ids it holds, checked to be live kernel objects (so the later check is not vacuous). */
export const agentObjects = (pid: number) =>
  Effect.gen(function*() {
    const ours = bpfIdsOf(pid)
    // discovery + go_context + server + client objects; every uprobe and the exec/exit tracepoints are links.
    assert.isAtLeast(ours.progs.size, 4, "agent programs")
    assert.isAtLeast(ours.links.size, 6, "agent links")
    assert.isAtLeast(ours.maps.size, 4, "agent maps")
    const kernel = yield* kernelIds
    assert.deepStrictEqual(remaining(ours, kernel), {
      progs: [...ours.progs],
      links: [...ours.links],
      maps: [...ours.maps]
    })
    return ours
  })
