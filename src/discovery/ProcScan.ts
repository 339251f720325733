/** The /proc side of discovery: what already runs when the agent starts. */
import { Effect, Schema } from "effect"
import * as fs from "node:fs"

/** A PID that was asked for does not exist (or vanished before it could be read). */
export class ProcessNotFound extends Schema.TaggedError<ProcessNotFound>()("ProcessNotFound", {
  pid: Schema.Number,
  message: Schema.String
}) {}

/** The process exists but its executable cannot be read (permissions, or a kernel thread). */
export class ProcessUnreadable extends Schema.TaggedError<ProcessUnreadable>()("ProcessUnreadable", {
  pid: Schema.Number,
  message: Schema.String
}) {}

/**
 * The executable of a process. The link target gets " (deleted)" when the file was replaced on disk; the
 * /proc/<pid>/exe path itself still reaches the running image, so use it then.
 */
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
