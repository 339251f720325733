/** The /proc side of discovery: what already runs when the agent starts. */
import { Effect } from "effect"
import { ProcessNotFound, ProcessUnreadable } from "../target/Errors.ts"
import * as fs from "node:fs"

const readExe = (pid: number): string => {
  const target = fs.readlinkSync(`/proc/${pid}/exe`)
  return target.endsWith(" (deleted)") ? `/proc/${pid}/exe` : target
}

export const exeOf = (pid: number): Effect.Effect<string, ProcessNotFound | ProcessUnreadable> =>
  Effect.try({
    try: () => readExe(pid),
    catch: (e) => {
      const code = (e as NodeJS.ErrnoException).code
      return code === "ENOENT" || code === "ESRCH"
        ? new ProcessNotFound({ pid, message: `process ${pid} does not exist` })
        : new ProcessUnreadable({ pid, message: `cannot read /proc/${pid}/exe: ${code ?? String(e)}` })
    }
  })

/** Every user process with a readable executable (kernel threads have none and are skipped). */
export const scan: Effect.Effect<ReadonlyArray<{ readonly pid: number; readonly exe: string }>> = Effect.sync(() => {
  const out: Array<{ pid: number; exe: string }> = []
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue
    const pid = Number(name)
    try {
      out.push({ pid, exe: readExe(pid) })
    } catch {
      // vanished or a kernel thread
    }
  }
  return out
})

/** /proc/PID/cmdline's NUL-separated arguments (the trailing NUL ends the last one, it does not add one). */
export const parseCmdline = (text: string): ReadonlyArray<string> =>
  text === "" ? [] : (text.endsWith("\0") ? text.slice(0, -1) : text).split("\0")

/** A process's arguments; a process that is gone has none. */
export const argsOf = (pid: number): Effect.Effect<ReadonlyArray<string>> =>
  Effect.sync(() => {
    try {
      return parseCmdline(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8"))
    } catch {
      return []
    }
  })
