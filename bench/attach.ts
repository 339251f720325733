/**
 * What attaching costs, in the three ways the kernel binding can attach the net/http server probe to the example
 * backend (examples/go-service), measured in one run:
 *
 * 1. Attach and detach of N processes of one executable: one perf-event link per offset and process (the first
 *    versions' way), one uprobe_multi link per program and process (a `--pid` selection), and one uprobe_multi link
 *    per program for the file (an `--exe` selection: processes only get a `ps_targets` entry).
 * 2. What a process nobody selected pays: the backend under keep-alive load (bench/load) with no probe, with links
 *    for another process only (per-pid), and with links for the whole file (every process traps; the BPF side
 *    finds no `ps_targets` entry and returns).
 *
 *   node_modules/.bin/node bench/attach.ts [processes, default 30] [requests, default 5000]
 *
 * Root is needed. Figures are from one run on whatever machine this is: read ratios, not absolutes.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as readline from "node:readline"
import { Effect, Exit, Option, Scope } from "effect"
import { Bpf } from "../src/kernel/Bpf.ts"
import * as BpfLive from "../src/kernel/BpfLive.ts"
import * as GoBinary from "../src/target/GoBinary.ts"
import { buildExample } from "../test/instrumentations/fixtures.ts"

const root = path.resolve(import.meta.dirname, "..")
const processes = Number(process.argv[2] ?? 30)
const requests = Number(process.argv[3] ?? 5000)

const children: Array<ChildProcess> = []
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
})

const startBackend = (exe: string) =>
  new Promise<{ readonly pid: number; readonly addr: string; readonly child: ChildProcess }>((resolve, reject) => {
    const child = spawn(exe, ["-addr", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] })
    children.push(child)
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      const m = /^listening on (\S+)$/.exec(line)
      if (m) resolve({ pid: child.pid!, addr: m[1]!, child })
    })
    child.once("exit", (code) => reject(new Error(`backend exited (${code})`)))
  })

const buildLoad = () => {
  const out = path.join(root, "test", ".cache", "bench", "load")
  fs.mkdirSync(path.dirname(out), { recursive: true })
  execFileSync("go", ["build", "-o", out, "."], {
    cwd: path.join(root, "bench", "load"),
    env: { ...process.env, GOFLAGS: "-mod=mod" }
  })
  return out
}

const runLoad = (load: string, url: string) =>
  JSON.parse(execFileSync(load, ["-url", url, "-n", String(requests), "-c", "1"]).toString()) as {
    readonly rps: number
    readonly p50us: number
    readonly p99us: number
  }

const ms = (t0: number) => performance.now() - t0

const program = Effect.gen(function*() {
  const exe = path.join(buildExample(process.env["BENCH_GO_VERSION"] ?? "1.26.8"), "backend")
  const load = buildLoad()
  const bpf = yield* Bpf
  const binary = yield* GoBinary.analyzeBuffer(exe, fs.readFileSync(exe))
  const fn = Option.getOrThrow(binary.function("net/http.serverHandler.ServeHTTP"))
  const object = path.join(root, "bpf", "out", "nethttp_server.bpf.o")
  const programs = { uprobe_ServeHTTP: [fn.entryOffset], uprobe_ServeHTTP_ret: fn.returnOffsets }
  console.log(`backend: ServeHTTP has ${fn.returnOffsets.length} RET(s); uprobe_multi here: ${bpf.uprobeMulti}`)

  // --- 1. attach and detach of N processes ----------------------------------------------------------------------
  const backends = yield* Effect.promise(() => Promise.all(Array.from({ length: processes }, () => startBackend(exe))))
  const modes = [
    { name: "perf link per offset and pid", multi: false, perPid: true },
    { name: "uprobe_multi per program and pid", multi: true, perPid: true },
    { name: "uprobe_multi per program, whole file", multi: true, perPid: false }
  ] as const
  console.log(`\n${processes} processes of one executable:`)
  console.log("| mode | links | attach all | detach all |")
  console.log("| --- | --- | --- | --- |")
  for (const mode of modes) {
    const objScope = yield* Scope.make()
    const obj = yield* bpf.load({ file: object, name: "nethttp_server", uprobeMulti: mode.multi }).pipe(
      Scope.provide(objScope)
    )
    // Parallel: the links' kernel waits overlap, as the probes' own scopes do.
    const links = yield* Scope.make("parallel")
    const t0 = performance.now()
    const attachOne = (pid: number | undefined) =>
      Effect.forEach(Object.entries(programs), ([program, offsets]) =>
        obj.attachUprobe({ program, binary: exe, offsets, ...(pid === undefined ? {} : { pid }) }), {
        concurrency: "unbounded"
      }).pipe(Scope.provide(links))
    const made = mode.perPid
      ? yield* Effect.forEach(backends, (b) => attachOne(b.pid), { concurrency: "unbounded" }).pipe(
        Effect.map((all) => all.flat())
      )
      : yield* attachOne(undefined)
    const attachMs = ms(t0)
    const t1 = performance.now()
    yield* Scope.close(links, Exit.void)
    const detachMs = ms(t1)
    const kernelLinks = made.reduce((n, l) => n + l.kernelLinks, 0)
    console.log(`| ${mode.name} | ${kernelLinks} | ${attachMs.toFixed(1)} ms | ${detachMs.toFixed(1)} ms |`)
    yield* Scope.close(objScope, Exit.void)
  }
  for (const b of backends) b.child.kill("SIGKILL")

  // --- 2. what an unselected process pays -----------------------------------------------------------------------
  const selected = yield* Effect.promise(() => startBackend(exe))
  const other = yield* Effect.promise(() => startBackend(exe))
  const url = `http://${other.addr}/users/1`
  runLoad(load, url) // warm-up: connections, goroutines, caches
  const rows: Array<{ name: string; rps: number; p50: number; p99: number }> = []
  const measure = (name: string) => {
    const r = runLoad(load, url)
    rows.push({ name, rps: r.rps, p50: r.p50us, p99: r.p99us })
  }
  measure("no probe")
  for (const perPid of [true, false]) {
    const scope = yield* Scope.make()
    const obj = yield* bpf.load({ file: object, name: "nethttp_server", uprobeMulti: true }).pipe(Scope.provide(scope))
    yield* Effect.forEach(Object.entries(programs), ([program, offsets]) =>
      obj.attachUprobe({ program, binary: exe, offsets, ...(perPid ? { pid: selected.pid } : {}) })).pipe(
        Scope.provide(scope)
      )
    measure(perPid ? "links for another pid only" : "links for the whole file (filtered in BPF)")
    yield* Scope.close(scope, Exit.void)
  }
  const floor = rows[0]!
  console.log(`\nAn unselected process of the same executable under load (${requests} requests, 1 connection):`)
  console.log("| links | req/s | vs no probe | p50 µs | p99 µs |")
  console.log("| --- | --- | --- | --- | --- |")
  for (const r of rows) {
    console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${(r.rps / floor.rps).toFixed(2)}× | ${r.p50.toFixed(0)} | ` +
      `${r.p99.toFixed(0)} |`)
  }
})

await Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(BpfLive.layer)))
process.exit(0)
