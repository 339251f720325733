/**
 * What the process-level benches (overhead, footprint) read about the processes they start: CPU and RSS from /proc,
 * a child's "listening on" line, and the Go load generator (bench/load) built once into test/.cache/bench.
 */
import { type ChildProcess, execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as readline from "node:readline"

const root = path.resolve(import.meta.dirname, "..", "..")
export const clockTicks = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim())

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** utime + stime of a process in seconds (its exited threads included), at clock-tick resolution. */
export const cpuSeconds = (pid: number): number => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  // Fields after the command (which may hold spaces), from field 3 on.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / clockTicks
}

/**
 * CPU time of a process's live threads in nanoseconds (schedstat's run time): a clock tick is 10 ms, too coarse for
 * an idle rate near 1 ms per second, which schedstat resolves. Threads that exited are not counted (use cpuSeconds
 * across work that starts and ends threads).
 */
export const cpuNs = (pid: number): number => {
  let total = 0
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0])
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return total
}

export const rssMiB = (pid: number): number => {
  const line = fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))
  return Number(line?.split(/\s+/)[1] ?? 0) / 1024
}

/** The first line of `streams` matching `pattern`; rejects after `ms` or when the process exits first. */
export const waitForLine = (
  child: ChildProcess,
  streams: ReadonlyArray<"stdout" | "stderr">,
  pattern: RegExp,
  ms: number
) =>
  new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${ms} ms`)), ms)
    for (const s of streams) {
      readline.createInterface({ input: child[s]! }).on("line", (line) => {
        const m = pattern.exec(line)
        if (m) {
          clearTimeout(timer)
          resolve(m)
        }
      })
    }
    child.once("exit", (code) => reject(new Error(`process exited (${code}) before printing ${pattern}`)))
  })

/** Builds bench/load with the local Go; returns the executable's path. */
export const buildLoad = (): string => {
  const load = path.join(root, "test", ".cache", "bench", "load")
  fs.mkdirSync(path.dirname(load), { recursive: true })
  execFileSync("go", ["build", "-o", load, "."], {
    cwd: path.join(root, "bench", "load"),
    env: { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=mod" },
    stdio: "inherit"
  })
  return load
}

/** bench/load's JSON line. */
export interface Load {
  readonly requests: number
  readonly errors: number
  readonly seconds: number
  readonly rps: number
  readonly p50us: number
  readonly p90us: number
  readonly p99us: number
  readonly maxus: number
}

/**
 * A copy of an executable that only this bench runs: `probescope run --exe` selects every process of a file, so the
 * shared build of the example (test/.cache) would also trace another test's or bench's processes of it, and their
 * spans would count as this bench's. Removed when the process exits.
 */
export const privateCopy = (file: string): string => {
  const dir = path.join(root, "test", ".cache", "bench", `private-${process.pid}`)
  fs.mkdirSync(dir, { recursive: true })
  const copy = path.join(dir, path.basename(file))
  fs.copyFileSync(file, copy)
  fs.chmodSync(copy, 0o755)
  process.once("exit", () => fs.rmSync(dir, { recursive: true, force: true }))
  return copy
}

/** A process's CPU seconds per second over the next `ms`, at schedstat's resolution (its live threads). */
export const cpuRate = async (pid: number, ms: number): Promise<number> => {
  const c0 = cpuNs(pid)
  const t0 = performance.now()
  await sleep(ms)
  return (cpuNs(pid) - c0) / 1e9 / ((performance.now() - t0) / 1000)
}

/**
 * How often a process's main thread has been scheduled in (schedstat's third field: each wakeup from a wait counts
 * one): an idle agent's count grows with every timer and every event that wakes its event loop.
 */
export const mainThreadRuns = (pid: number): number =>
  Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").trim().split(" ")[2])

/** Where a process's RSS is, in MiB, from /proc/<pid>/smaps: by kind of mapping. */
export interface RssParts {
  /** Anonymous memory: the V8 heap, malloc, thread stacks. */
  readonly anonymous: number
  /** The node executable's pages (file-backed: shared with every other node process, counted in each one's RSS). */
  readonly nodeBinary: number
  /** BPF maps mapped into the process: ring buffers (each counted twice over: the kernel maps its data twice). */
  readonly bpfMaps: number
  /** Everything else: shared libraries, other files. */
  readonly other: number
}

export const rssParts = (pid: number): RssParts => {
  let anonymous = 0
  let nodeBinary = 0
  let bpfMaps = 0
  let other = 0
  let name = ""
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line)
    if (head !== null) {
      name = head[1]!
      continue
    }
    if (!line.startsWith("Rss:")) continue
    const kib = Number(line.split(/\s+/)[1])
    if (name === "" || name.startsWith("[heap]") || name.startsWith("[stack")) anonymous += kib
    else if (name === "anon_inode:bpf-map") bpfMaps += kib
    else if (path.basename(name) === "node") nodeBinary += kib
    else other += kib
  }
  return { anonymous: anonymous / 1024, nodeBinary: nodeBinary / 1024, bpfMaps: bpfMaps / 1024, other: other / 1024 }
}
