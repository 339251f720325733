/**
 * ProcessTarget on live processes: a C program (built here: dynamic, a stripped copy, a static stripped one with no
 * symbol table at all) analysed natively with its mapped libc, and a python3 process whose dlopen'ed library was
 * deleted afterwards (its mapping, not the path, is analysed).
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect, Fiber, Layer, Option } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as GoBinary from "../../src/target/GoBinary.ts"
import * as NativeBinary from "../../src/target/NativeBinary.ts"
import * as Loader from "../../src/target/internal/Loader.ts"
import * as ProcessTarget from "../../src/target/ProcessTarget.ts"

let dir = ""
let dynamic = ""
let stripped = ""
let bare = ""
const children: Array<ChildProcess> = []

const start = (file: string, args: ReadonlyArray<string> = []): Promise<number> =>
  new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "ignore"] })
    children.push(child)
    child.on("error", reject)
    child.stdout!.once("data", () => resolve(child.pid!))
  })

beforeAll(() => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-process-target-"))
  const source = Path.join(dir, "idle.c")
  Fs.writeFileSync(
    source,
    "#include <stdio.h>\n#include <unistd.h>\nint main(void) { puts(\"ready\"); fflush(stdout); for (;;) pause(); }\n"
  )
  dynamic = Path.join(dir, "idle")
  execFileSync("gcc", ["-O1", "-o", dynamic, source])
  stripped = Path.join(dir, "idle-stripped")
  execFileSync("strip", ["-o", stripped, dynamic])
  bare = Path.join(dir, "idle-static")
  execFileSync("gcc", ["-O1", "-static", "-s", "-o", bare, source])
}, 60_000)

afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
  if (dir !== "") Fs.rmSync(dir, { recursive: true, force: true })
})

const layer = Layer.mergeAll(GoBinary.layer, NativeBinary.layer)

const identity = (file: string) => {
  const s = Fs.statSync(file, { bigint: true })
  return `${s.dev}:${s.ino}`
}

describe("ProcessTarget.analyzeProcess", { timeout: 60_000 }, () => {
  it.live("a C program: native, its symbols, and libc as mapped (path, identity, version, load address)", () =>
    Effect.gen(function*() {
      const pid = yield* Effect.promise(() => start(dynamic))
      const target = yield* ProcessTarget.analyzeProcess(pid, { libraries: new Set(["libc.so.6"]) })
      assert.strictEqual(target.language, "native")
      if (target.language !== "native") return
      assert.strictEqual(target.exe, dynamic)
      assert.strictEqual(target.file, identity(dynamic))
      assert.strictEqual(target.goVersion, "")
      assert.strictEqual(target.native?.language, "c")
      assert.isFalse(target.stripped)
      assert.strictEqual(Option.getOrThrow(target.symbol("main")).kind, "function")
      assert.deepStrictEqual(target.libraries.map((l) => l.name), ["libc.so.6"])
      const libc = target.libraries[0]!
      const maps = Fs.readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")
      const first = maps.find((l) => l.endsWith("/libc.so.6") && / 00000000 /.test(l))!
      assert.strictEqual(libc.base, BigInt(`0x${first.split("-")[0]}`))
      assert.strictEqual(libc.path, first.slice(first.indexOf("/")))
      assert.strictEqual(libc.file, identity(libc.path))
      assert.strictEqual(libc.soname, "libc.so.6")
      assert.match(libc.version!, /^2\.\d+$/)
      // `stdout` is a data object of libc, exported: the symbol lookup finds objects too.
      assert.strictEqual(Option.getOrThrow(libc.symbol("stdout")).kind, "object")
      assert.strictEqual(Option.getOrThrow(libc.symbol("getpid")).kind, "function")
      // No library asked for: the maps are not read, nothing is listed.
      const none = yield* ProcessTarget.analyzeProcess(pid, { libraries: new Set() })
      assert.deepStrictEqual(none.libraries, [])
    }).pipe(Effect.provide(layer)))

  it.live("a stripped copy: stripped, its own symbols gone, libc unchanged", () =>
    Effect.gen(function*() {
      const pid = yield* Effect.promise(() => start(stripped))
      const target = yield* ProcessTarget.analyzeProcess(pid)
      assert.isTrue(target.stripped)
      assert.isTrue(Option.isNone(target.symbol("main")))
      assert.isTrue(target.libraries.some((l) => l.name === "libc.so.6" && Option.isSome(l.symbol("getpid"))))
    }).pipe(Effect.provide(layer)))

  it.live("a static binary with no symbol table at all is still a target: no analysis, no symbols, no libraries", () =>
    Effect.gen(function*() {
      const pid = yield* Effect.promise(() => start(bare))
      const target = yield* ProcessTarget.analyzeProcess(pid)
      assert.strictEqual(target.language, "native")
      if (target.language !== "native") return
      assert.isUndefined(target.native)
      assert.isTrue(target.stripped)
      assert.isTrue(Option.isNone(target.symbol("main")))
      assert.deepStrictEqual(target.libraries, [])
    }).pipe(Effect.provide(layer)))

  // /proc/PID/map_files is root's (CAP_SYS_ADMIN), as attaching uprobes is.
  it.live.skipIf(process.getuid?.() !== 0)(
    "a library deleted after it was mapped: analysed through the mapping, keeping the file's identity",
    () =>
    Effect.gen(function*() {
      const copy = Path.join(dir, "libz-copy.so.1")
      Fs.copyFileSync(Fs.realpathSync("/lib/x86_64-linux-gnu/libz.so.1"), copy)
      const id = identity(copy)
      const pid = yield* Effect.promise(() =>
        start("/usr/bin/python3", [
          "-c",
          `import ctypes, time\nctypes.CDLL(${JSON.stringify(copy)})\nprint('ready', flush=True)\ntime.sleep(600)`
        ])
      )
      Fs.unlinkSync(copy)
      const target = yield* ProcessTarget.analyzeProcess(pid, { libraries: new Set(["libz-copy.so.1"]) })
      assert.strictEqual(target.libraries.length, 1)
      const lib = target.libraries[0]!
      assert.strictEqual(lib.mappedPath, copy)
      assert.match(lib.path, new RegExp(`^/proc/${pid}/map_files/[0-9a-f]+-[0-9a-f]+$`))
      assert.strictEqual(lib.file, id)
      assert.strictEqual(lib.soname, "libz.so.1")
      assert.isTrue(Option.isSome(lib.symbol("deflate")))
    }).pipe(Effect.provide(layer))
  )

  // A process found at exec (as discovery finds them) has mapped only its executable and its loader: the libraries
  // come in the next milliseconds. Here the loader is held at a FIFO named like a library curl needs, first on its
  // LD_LIBRARY_PATH: its open blocks, in the loader's code, until the FIFO is opened for writing; then it reads the
  // header of a 32-bit ELF, skips that "library" as the wrong class (as it does across multilib directories) and maps
  // the real ones, libssl among them.
  it.live("a process still in its dynamic loader is waited for (at most 100 ms): a library it maps after is found", () =>
    Effect.gen(function*() {
      const held = Path.join(dir, "held")
      Fs.mkdirSync(held, { recursive: true })
      // curl needs libcurl, which needs libssl; python3 needs libm (first) and not libssl.
      for (const name of ["libcurl.so.4", "libm.so.6"]) {
        if (!Fs.existsSync(Path.join(held, name))) execFileSync("mkfifo", [Path.join(held, name)])
      }
      const fifo = Path.join(held, "libcurl.so.4")
      const curlIn = (program: ReadonlyArray<string> = ["/usr/bin/curl", "-K", "-"]): Effect.Effect<number> =>
        Effect.gen(function*() {
          const child = spawn(program[0]!, program.slice(1), {
            stdio: ["pipe", "ignore", "ignore"],
            env: { ...process.env, LD_LIBRARY_PATH: held }
          })
          children.push(child)
          // In the loader's openat (257) of the FIFO.
          const syscall = () => Fs.readFileSync(`/proc/${child.pid}/syscall`, "utf8")
          while (!syscall().startsWith("257 ")) yield* Effect.sleep("1 millis")
          return child.pid!
        })
      const release = (at = fifo) => {
        const fd = Fs.openSync(at, "w")
        // ELFCLASS32, little-endian, version 1; the loader reads a whole ELF64 header's worth before it looks.
        Fs.writeSync(fd, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1, ...new Array(57).fill(0)]))
        Fs.closeSync(fd)
      }
      const libssl = new Set(["libssl.so.3"])
      const names = (t: ProcessTarget.ProcessTarget) => t.libraries.map((l) => l.name)

      // Never let go: the analysis waits its 100 ms, then goes on without the library.
      const stuck = yield* curlIn()
      const started = Date.now()
      const alone = yield* ProcessTarget.analyzeProcess(stuck, { libraries: libssl })
      assert.isAtLeast(Date.now() - started, 100)
      assert.deepStrictEqual(names(alone), [])
      release()

      // Let go while the analysis waits: the library is found.
      const pid = yield* curlIn()
      const analysis = yield* Effect.forkChild(ProcessTarget.analyzeProcess(pid, { libraries: libssl }))
      yield* Effect.sleep("20 millis")
      release()
      const target = yield* Fiber.join(analysis)
      assert.deepStrictEqual(names(target), ["libssl.so.3"])
      assert.isTrue(Option.isSome(target.libraries[0]!.symbol("SSL_write")))

      // What is waited for: a library in the program's DT_NEEDED closure, found as its loader finds them (the FIFO
      // first on LD_LIBRARY_PATH is no file, so the real libcurl is read). python3 needs libm, not libssl.
      const curl = yield* curlIn()
      const python = yield* curlIn(["/usr/bin/python3", "-c", "import sys; sys.stdin.read()"])
      assert.deepStrictEqual(Loader.willMap(curl, ["libssl.so.3", "libfoo.so.1"]), ["libssl.so.3"])
      assert.deepStrictEqual(Loader.willMap(python, ["libssl.so.3", "libm.so.6"]), ["libm.so.6"])
      release()
      release(Path.join(held, "libm.so.6"))
    }).pipe(Effect.provide(layer)))
})

describe("ProcessTarget.libraryVersion", () => {
  it.effect("version text, else OpenSSL's or glibc's symbol versions, else the newest of the main prefix", () =>
    Effect.gen(function*() {
      const native = yield* NativeBinary.NativeAnalysis
      const version = (file: string) => Effect.map(native.analyzeFile(file), ProcessTarget.libraryVersion)
      assert.match((yield* version("/usr/lib/x86_64-linux-gnu/libcrypto.so.3"))!, /^3\.\d+\.\d+$/)
      assert.strictEqual(yield* version("/usr/lib/x86_64-linux-gnu/libssl.so.3"), "3.0.0")
      assert.match((yield* version("/usr/lib/x86_64-linux-gnu/libc.so.6"))!, /^2\.\d+$/)
      // libz defines ZLIB_1.2.0 ... ZLIB_1.2.x.y: the newest.
      const zlib = (yield* version(Fs.realpathSync("/lib/x86_64-linux-gnu/libz.so.1")))!
      const defined = execFileSync("sh", ["-c", "readelf -V --wide /lib/x86_64-linux-gnu/libz.so.1"]).toString()
      const all = [...defined.matchAll(/Name: ZLIB_([\d.]+)/g)].map((m) => m[1]!)
      const newest = all.sort((a, b) => {
        const x = a.split(".").map(Number)
        const y = b.split(".").map(Number)
        for (let i = 0; i < 4; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0)
        return 0
      }).at(-1)
      assert.strictEqual(zlib, newest)
    }).pipe(Effect.provide(NativeBinary.layer)))
})
