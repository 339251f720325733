/**
 * Which processes a `Selection` picks, and by which of its selectors: pids, executables (paths or absolute globs),
 * listening ports, containers (an id or a prefix of one), cgroup path globs, and Go (decided after analysis). The
 * selectors are a union: a process is selected when any one matches.
 *
 * Matching is pure over what is known of a process (its pid, executable, cgroup, listening ports); the caller
 * supplies those (the driver from discovery and /proc, `inspect` and `list` from /proc directly), so `run`,
 * `inspect` and `list` decide alike.
 */
import * as Fs from "node:fs"
import { Effect, Schema } from "effect"
import type { CgroupInfo } from "../../discovery/Cgroup.ts"
import * as Glob from "../../discovery/Glob.ts"
import type { Selection } from "./targets.ts"

/** A selector that can never match anything (a port out of range, a relative glob, ...): a usage error. */
export class SelectionError extends Schema.TaggedError<SelectionError>()("SelectionError", {
  /** The selector as the command line spells it, e.g. `--port 70000`. */
  selector: Schema.String,
  message: Schema.String
}) {}

/** What is known of a process when deciding whether it is selected. */
export interface ProcessView {
  readonly pid: number
  /** The executable, symlinks resolved. */
  readonly exe: string
  /** Read only when a container or cgroup selector needs it. */
  readonly cgroup: () => CgroupInfo
  /** The selected ports it listens on (only asked when ports are selected). */
  readonly ports: () => ReadonlyArray<number>
}

const CONTAINER = /^[0-9a-f]{1,64}$/

/** The first selector that cannot work, as one line naming it and what is expected. */
export const validate = (s: Selection): Effect.Effect<void, SelectionError> =>
  Effect.gen(function*() {
    for (const port of s.ports ?? []) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        return yield* new SelectionError({
          selector: `--port ${port}`,
          message: `--port ${port}: not a TCP port (expected 1 to 65535)`
        })
      }
    }
    for (const exe of s.exes) {
      if (Glob.isGlob(exe) && !exe.startsWith("/")) {
        return yield* new SelectionError({
          selector: `--exe ${exe}`,
          message: `--exe ${exe}: a glob must be an absolute path (e.g. /srv/*/bin/api)`
        })
      }
    }
    for (const id of s.containers ?? []) {
      if (!CONTAINER.test(id)) {
        return yield* new SelectionError({
          selector: `--container ${id}`,
          message: `--container ${id}: not a container id or a prefix of one (expected 1 to 64 lowercase hex digits)`
        })
      }
    }
    for (const glob of s.cgroups ?? []) {
      if (!glob.startsWith("/")) {
        return yield* new SelectionError({
          selector: `--cgroup ${glob}`,
          message: `--cgroup ${glob}: not an absolute cgroup path (as /proc/PID/cgroup shows it, e.g. ` +
            `/kubepods.slice/**)`
        })
      }
    }
  })

const realpath = (p: string): string => {
  try {
    return Fs.realpathSync(p)
  } catch {
    return p
  }
}

/** One selector's label (as the command line spells it) and its test. */
interface Rule {
  readonly label: string
  /** Every process of an executable is wanted: its links can be shared per file. */
  readonly wide: boolean
  readonly test: (p: ProcessView) => boolean
}

/** A selection made ready to match processes. */
export interface Matcher {
  /** The labels of the selectors that pick this process (empty: not selected), Go aside. */
  readonly matches: (p: ProcessView) => ReadonlyArray<string>
  /** Whether one of the matching selectors takes every process of the executable. */
  readonly wide: (p: ProcessView) => boolean
  /** Whether a selector reads the cgroup (container or cgroup globs). */
  readonly needsCgroup: boolean
  readonly ports: ReadonlySet<number>
  /** Every selector's label, pids and Go aside (for the "matches nothing yet" warnings). */
  readonly labels: ReadonlyArray<string>
}

/** Compiles a (validated) selection. */
export const compile = (s: Selection): Matcher => {
  const rules: Array<Rule> = []
  for (const pid of s.pids) rules.push({ label: `--pid ${pid}`, wide: false, test: (p) => p.pid === pid })
  for (const exe of s.exes) {
    if (Glob.isGlob(exe)) {
      const glob = Glob.matcher(exe)
      rules.push({ label: `--exe ${exe}`, wide: true, test: (p) => glob(p.exe) })
    } else {
      const path = realpath(exe)
      rules.push({ label: `--exe ${exe}`, wide: true, test: (p) => p.exe === path })
    }
  }
  for (const id of s.containers ?? []) {
    rules.push({
      label: `--container ${id}`,
      wide: false,
      test: (p) => p.cgroup().containerId?.startsWith(id) ?? false
    })
  }
  for (const pattern of s.cgroups ?? []) {
    const glob = Glob.matcher(pattern)
    rules.push({ label: `--cgroup ${pattern}`, wide: false, test: (p) => p.cgroup().paths.some(glob) })
  }
  for (const port of s.ports ?? []) {
    rules.push({ label: `--port ${port}`, wide: false, test: (p) => p.ports().includes(port) })
  }
  return {
    matches: (p) => rules.filter((r) => r.test(p)).map((r) => r.label),
    wide: (p) => rules.some((r) => r.wide && r.test(p)),
    needsCgroup: (s.containers ?? []).length > 0 || (s.cgroups ?? []).length > 0,
    ports: new Set(s.ports ?? []),
    labels: rules.filter((r) => !r.label.startsWith("--pid ")).map((r) => r.label)
  }
}

/** The start-up warning for a selector no running process matches (processes may come later). */
export const unmatchedReason = (label: string): string =>
  label.startsWith("--port ")
    ? `no process listens on port ${label.slice("--port ".length)}; watching for one`
    : label.startsWith("--exe ")
    ? "no running process matches; watching for one"
    : "no running process is in it; watching for one"
