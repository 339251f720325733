import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as NativeBinary from "../../src/target/NativeBinary.ts"
import { buildNative } from "./nativeHelpers.ts"

const dir = buildNative()

/** Starts a process for the test's scope; waits until its maps show `lib` loaded. */
const started = (cmd: string, args: Array<string>, lib: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const child = spawn(cmd, args, { stdio: "ignore" })
      for (let i = 0; i < 200; i++) {
        const maps = await Fs.promises.readFile(`/proc/${child.pid}/maps`, "utf8").catch(() => "")
        if (maps.includes(lib)) return child
        await new Promise((r) => setTimeout(r, 25))
      }
      child.kill("SIGKILL")
      throw new Error(`${cmd} never mapped ${lib}`)
    }),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )

/** The test's own reading of /proc/<pid>/maps: path → start of its offset-0 mapping. */
const bases = (pid: number): Map<string, bigint> => {
  const out = new Map<string, bigint>()
  for (const line of Fs.readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
    const f = line.split(/\s+/)
    if (f.length < 6 || f[5] === "" || f[4] === "0" || Number.parseInt(f[2]!, 16) !== 0) continue
    if (!out.has(f[5]!)) out.set(f[5]!, BigInt(`0x${f[0]!.split("-")[0]}`))
  }
  return out
}

/** The libraries `ldd` resolves for a program: soname → path. */
const ldd = (file: string): Map<string, string> =>
  new Map([...execFileSync("ldd", [file]).toString().matchAll(/^\s*(\S+) => (\S+) \(0x/gm)]
    .map((m) => [m[1]!, Fs.realpathSync(m[2]!)]))

describe("processMaps", { timeout: 60_000 }, () => {
  it.live("the C program: its executable, libdemo and libc with their bases; a function's address", () =>
    Effect.gen(function*() {
      const main = Path.join(dir, "main-pie")
      const child = yield* started(main, ["wait"], "libdemo.so.1")
      const objects = yield* NativeBinary.processMaps(child.pid!)
      const expected = bases(child.pid!)
      for (const [soname, path] of ldd(main)) {
        const o = objects.find((o) => o.path === path)
        assert.isDefined(o, `${soname} (${path}) not listed`)
        assert.strictEqual(o!.base, expected.get(path))
        assert.strictEqual(o!.procPath, `/proc/${child.pid}/root${path}`)
        assert.isAbove(o!.executable.length, 0)
        assert.strictEqual(o!.base! % 4096n, 0n)
      }
      const exe = objects.find((o) => o.path === main)!
      assert.strictEqual(exe.base, expected.get(main))
      // A PIE's function: base + its address (offset and address agree in its first segments).
      const b = yield* NativeBinary.analyzeBuffer(main, Fs.readFileSync(main))
      const helper = Option.getOrThrow(b.function("helper"))
      assert.deepStrictEqual(NativeBinary.addressOf(exe, helper.fileOffset!), Option.some(exe.base! + helper.address))
    }))

  it.live("a Python process using ssl maps libssl.so.3 and libc", () =>
    Effect.gen(function*() {
      const child = yield* started("python3", ["-c", "import ssl, time; time.sleep(30)"], "libssl.so")
      const objects = yield* NativeBinary.processMaps(child.pid!)
      const expected = bases(child.pid!)
      for (const name of ["libssl.so.3", "libc.so.6"]) {
        const o = objects.find((o) => Path.basename(o.path) === name)
        assert.isDefined(o, `${name} not mapped`)
        assert.strictEqual(o!.base, expected.get(o!.path))
        assert.isFalse(o!.deleted)
        const lib = yield* NativeBinary.analyzeBuffer(o!.path, Fs.readFileSync(o!.path))
        const fn = Option.getOrThrow(lib.function(name === "libc.so.6" ? "malloc" : "SSL_write"))
        const at = Option.getOrThrow(NativeBinary.addressOf(o!, fn.fileOffset!))
        // Shared objects are linked at 0: the address in the process is the base plus the symbol's value.
        assert.strictEqual(at, o!.base! + fn.address)
      }
    }))

  it.effect("a process that is gone, and an invalid pid, are typed errors", () =>
    Effect.gen(function*() {
      const gone = yield* Effect.flip(NativeBinary.processMaps(4194303 + 7))
      assert.strictEqual(gone._tag, "ProcessNotFound")
      assert.strictEqual(gone.message, `process ${4194303 + 7} not found`)
      const bad = yield* Effect.flip(NativeBinary.processMaps(-1))
      assert.strictEqual(bad._tag, "ProcessNotFound")
      assert.strictEqual(bad.message, "invalid pid -1")
      // pid 2 is kthreadd: a kernel thread maps nothing.
      const kthread = yield* Effect.flip(NativeBinary.processMaps(2))
      assert.strictEqual(kthread._tag, "ProcessUnreadable")
      assert.strictEqual(kthread.message, "process 2 has no mapped files (kernel thread or exited)")
    }))

  it("parseMaps: paths with spaces, deleted files, anonymous mappings left out", () => {
    const objects = NativeBinary.parseMaps(7, [
      "55d0c0000000-55d0c0001000 r--p 00000000 fd:01 123 /opt/my app/bin (deleted)",
      "55d0c0001000-55d0c0002000 r-xp 00001000 fd:01 123 /opt/my app/bin (deleted)",
      "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 [heap]",
      "7f0000002000-7f0000003000 r--p 00000000 fd:01 9 /usr/share/locale/locale-archive",
      ""
    ].join("\n"))
    assert.deepStrictEqual(objects, [{
      path: "/opt/my app/bin",
      procPath: "/proc/7/root/opt/my app/bin",
      device: "fd:01",
      inode: 123,
      deleted: true,
      base: 0x55d0c0000000n,
      executable: [{ start: 0x55d0c0001000n, end: 0x55d0c0002000n, fileOffset: 0x1000 }]
    }])
  })
})
