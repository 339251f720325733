/**
 * `inspect` of a Go binary, a C program (compiled here, and a stripped copy) and python3 processes (which map
 * libssl.so.3 once `import ssl` ran): each given probe's applicability with the reason — Go probes, shared-library
 * probes (mapped or not, version in range or not, symbols present or not) and tracepoint instruments (the kernel has
 * the tracepoint or not). Reads files, /proc and the kernel's BTF: no privileges.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as Inspect from "../../src/cli/Inspect.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import type { InspectedProbe } from "../../src/cli/Inspect.ts"

const root = Path.resolve(import.meta.dirname, "../..")
let dir = ""
let goExe = ""
let cExe = ""
let stripped = ""
const children: Array<ChildProcess> = []

beforeAll(() => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-inspect-"))
  goExe = Path.join(dir, "workapp")
  execFileSync("go", ["build", "-o", goExe, "."], { cwd: Path.join(root, "examples/custom-probe/app") })
  Fs.writeFileSync(
    Path.join(dir, "prog.c"),
    "#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf(\"%d\\n\", getpid()); return 0; }\n"
  )
  cExe = Path.join(dir, "prog")
  execFileSync("gcc", ["-O1", "-o", cExe, Path.join(dir, "prog.c")])
  stripped = Path.join(dir, "prog-stripped")
  execFileSync("strip", ["-o", stripped, cExe])
}, 300_000)

afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
  if (dir !== "") Fs.rmSync(dir, { recursive: true, force: true })
})

const python = (file: string): Promise<number> =>
  new Promise((resolve, reject) => {
    const child = spawn(file, ["-c", "import ssl, time\nprint('ready', flush=True)\ntime.sleep(600)"], {
      stdio: ["ignore", "pipe", "ignore"]
    })
    children.push(child)
    child.on("error", reject)
    child.stdout!.once("data", () => resolve(child.pid!))
  })

const instrument = (name: string, manifest: InspectedProbe["manifest"]): InspectedProbe => ({
  name,
  kind: "instrument",
  manifest
})

const Ssl = instrument("test/ssl", {
  library: { sharedObject: "libssl.so.3", versions: ">=3.0.0 <4" },
  symbols: [
    { name: "SSL_write", entry: "uprobe_SSL_write", return: "uretprobe_SSL_write" },
    { name: "SSL_write_nonexistent", entry: "uprobe_x", optional: true }
  ]
})
const FutureSsl = instrument("test/ssl4", {
  library: { sharedObject: "libssl.so.3", versions: ">=4" },
  symbols: [{ name: "SSL_write", entry: "uprobe_SSL_write" }]
})
const SslMissing = instrument("test/ssl_missing", {
  library: { sharedObject: "libssl.so.3" },
  symbols: [{ name: "SSL_does_not_exist", entry: "uprobe_x" }]
})
const Libc = instrument("test/libc", {
  library: { sharedObject: "libc.so.6", versions: ">=2.17" },
  symbols: [{ name: "getpid", entry: "uprobe_getpid", return: "uretprobe_getpid" }]
})
const Sched = instrument("test/sched", {
  processes: "any",
  tracepoints: [{ program: "tp_switch", category: "sched", name: "sched_switch" }]
})
const Absent = instrument("test/absent_tp", {
  processes: "any",
  tracepoints: [{ program: "tp_nope", category: "nope", name: "no_such_tracepoint" }]
})
const GoStd = instrument("test/go", {
  library: { module: "std" },
  symbols: [{ name: "runtime.main", entry: "uprobe_main" }]
})

const probes = [GoStd, Ssl, FutureSsl, SslMissing, Libc, Sched, Absent]

const byName = (report: Inspect.Report) =>
  Object.fromEntries(report.probes.map((p) => [p.name, p.applies ? "applies" : p.reason]))

const absentTp = "tracepoint nope:no_such_tracepoint is not in this kernel (no btf_trace_no_such_tracepoint in " +
  "/sys/kernel/btf/vmlinux)"

const run = <A, E>(effect: Effect.Effect<A, E, GoBinary.TargetAnalysis>) =>
  effect.pipe(Effect.provide(GoBinary.layer))

describe("inspect: applicability of each given probe", { timeout: 120_000 }, () => {
  it.effect("a Go binary: Go probes checked as before; no library needed; tracepoints by the kernel's BTF", () =>
    run(Effect.gen(function*() {
      const report = yield* Inspect.file(goExe, probes)
      assert.isFalse("native" in report)
      assert.deepStrictEqual(byName(report), {
        "test/go": "applies",
        "test/ssl": `shared library libssl.so.3 is not among the libraries ${goExe} needs (it needs none); a process ` +
          "of it may still load it (dlopen)",
        "test/ssl4": `shared library libssl.so.3 is not among the libraries ${goExe} needs (it needs none); a ` +
          "process of it may still load it (dlopen)",
        "test/ssl_missing": `shared library libssl.so.3 is not among the libraries ${goExe} needs (it needs none); ` +
          "a process of it may still load it (dlopen)",
        "test/libc": `shared library libc.so.6 is not among the libraries ${goExe} needs (it needs none); a process ` +
          "of it may still load it (dlopen)",
        "test/sched": "applies",
        "test/absent_tp": absentTp
      })
      const sched = report.probes.find((p) => p.name === "test/sched")!
      assert.deepStrictEqual(sched.tracepoints, [
        { program: "tp_switch", category: "sched", name: "sched_switch", inKernel: true }
      ])
      assert.strictEqual(sched.target, "tracepoints")
    })))

  it.effect("a C program: libc as it needs it, with getpid's offset; Go probes say it is not Go", () =>
    run(Effect.gen(function*() {
      const report = yield* Inspect.file(cExe, probes)
      assert.isTrue("native" in report)
      const needs = "(libc.so.6); a process of it may still load it (dlopen)"
      assert.deepStrictEqual(byName(report), {
        "test/go": "not a Go program (c)",
        "test/ssl": `shared library libssl.so.3 is not among the libraries ${cExe} needs ${needs}`,
        "test/ssl4": `shared library libssl.so.3 is not among the libraries ${cExe} needs ${needs}`,
        "test/ssl_missing": `shared library libssl.so.3 is not among the libraries ${cExe} needs ${needs}`,
        "test/libc": "applies",
        "test/sched": "applies",
        "test/absent_tp": absentTp
      })
      const libc = report.probes.find((p) => p.name === "test/libc")!
      assert.strictEqual(libc.target, "shared-library")
      assert.match(libc.library!.path!, /\/x86_64-linux-gnu\/libc\.so\.6$/)
      assert.match(libc.library!.version!, /^2\.\d+$/)
      assert.strictEqual(libc.library!.base, null)
      // The offset nm prints for libc's getpid (a PIE library: its addresses are its file offsets).
      const nm = execFileSync("nm", ["-D", "--defined-only", libc.library!.path!]).toString()
      const offset = Number.parseInt(/^([0-9a-f]+) \w getpid@@/m.exec(nm)![1]!, 16)
      assert.deepStrictEqual(libc.attachPoints, [{
        symbol: "getpid",
        entryProgram: "uprobe_getpid",
        returnProgram: "uretprobe_getpid",
        optional: false,
        found: true,
        library: libc.library!.path!,
        address: `0x${offset.toString(16)}`,
        fileOffset: offset,
        entryOffset: offset,
        returnOffsets: [offset]
      }])
      const text = Inspect.format(report)
      assert.include(text, "  ✓ test/libc (instrument)")
      assert.include(text, `      getpid  uprobe @${offset}  uretprobe @${offset}`)
      assert.include(text, "  ✗ test/go (instrument): not a Go program (c)")
    })))

  it.effect("a stripped C program: said stripped; what applies depends on libc and the kernel, not its symbols", () =>
    run(Effect.gen(function*() {
      const report = yield* Inspect.file(stripped, probes)
      assert.isTrue("native" in report && report.native !== null && report.native.stripped)
      const r = byName(report)
      assert.strictEqual(r["test/go"], "not a Go program (c)")
      assert.strictEqual(r["test/libc"], "applies")
      assert.strictEqual(r["test/sched"], "applies")
      assert.match(Inspect.format(report).split("\n")[1]!, /^ {2}native c pie, stripped, 0 functions/)
    })))

  for (const [label, file] of [["/usr/bin/python3", "/usr/bin/python3"], ["pyenv python3", "python3"]] as const) {
    it.live(`a ${label} process that imported ssl: the libssl probe applies, with where libssl is mapped`, () =>
      run(Effect.gen(function*() {
        // pyenv's `python3` is a shim that execs the interpreter it selects: the process runs that one.
        const exe = execFileSync(file, ["-c", "import sys; print(sys.executable)"]).toString().trim()
        const pid = yield* Effect.promise(() => python(file))
        const report = yield* Inspect.pid(pid, probes)
        if (!("native" in report)) return assert.fail("python3 is not Go")
        assert.strictEqual(report.pid, pid)
        assert.strictEqual(report.binary.path, Fs.realpathSync(exe))
        const ssl = report.probes.find((p) => p.name === "test/ssl")!
        const version = ssl.library!.version!
        assert.match(version, /^3\.\d+\.\d+$/)
        assert.deepStrictEqual(byName(report), {
          "test/go": "not a Go program (c)",
          "test/ssl": "applies",
          "test/ssl4": `libssl.so.3 ${version} is outside the supported range >=4`,
          // Debian strips its libraries: only the exported symbols are known, and the reason says so.
          "test/ssl_missing": "required symbol SSL_does_not_exist is not in libssl.so.3 " +
            "(/usr/lib/x86_64-linux-gnu/libssl.so.3, stripped: only exported symbols known)",
          "test/libc": "applies",
          "test/sched": "applies",
          "test/absent_tp": absentTp
        })
        assert.strictEqual(ssl.library!.path, "/usr/lib/x86_64-linux-gnu/libssl.so.3")
        // The load address is where /proc/PID/maps has the file's offset 0.
        const maps = Fs.readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")
        const first = maps.find((l) => l.endsWith("/libssl.so.3") && / 00000000 /.test(l))!
        assert.strictEqual(ssl.library!.base, `0x${first.split("-")[0]!.replace(/^0+/, "")}`)
        assert.deepStrictEqual(ssl.attachPoints.map((a) => [a.symbol, a.found]), [
          ["SSL_write", true],
          ["SSL_write_nonexistent", false]
        ])
        assert.isTrue(report.mappedObjects!.some((o) => o.path === "/usr/lib/x86_64-linux-gnu/libssl.so.3"))
        assert.include(Inspect.format(report), "  ✓ test/ssl (instrument)")
      })))
  }

  it.effect("a process that is gone: the analysis error, typed", () =>
    run(Effect.gen(function*() {
      const max = Number(Fs.readFileSync("/proc/sys/kernel/pid_max", "utf8"))
      const error = yield* Effect.flip(Inspect.pid(max + 1, probes))
      assert.strictEqual(error._tag, "ProcessNotFound")
    })))
})
