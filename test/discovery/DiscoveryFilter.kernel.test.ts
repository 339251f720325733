/**
 * bpf/discovery.bpf.c's filter, read straight from its ring: with discovery_mode[0] = 1 the kernel sends the exec of
 * a file whose name is in discovery_names and that process's exit, and nothing of a process of another name; with
 * the default mode it sends both. Only this test's own children are looked at among the records (the machine's
 * other processes exec and exit too).
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { nameKey } from "../../src/discovery/Discovery.ts"
import { loadAddon, type NativeObject } from "../../src/kernel/internal/addon.ts"
import { bpfObject, buildAll } from "../kernel/fixtures.ts"

buildAll()
const addon = loadAddon()
if (typeof addon === "string") throw new Error(addon)

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-discovery-filter-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
/** Two copies of `sleep` under names of their own; the wanted one also reached through a symlink. */
const wanted = path.join(dir, "wanted-sleeper")
const other = path.join(dir, "other-sleeper")
const link = path.join(dir, "link-to-wanted")
for (const f of [wanted, other]) {
  fs.copyFileSync("/usr/bin/sleep", f)
  fs.chmodSync(f, 0o755)
}
fs.symlinkSync(wanted, link)

const u32 = (n: number) => Buffer.from(new Uint32Array([n]).buffer)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
/** The drain timer backs off to 1 s on a quiet ring: records may take that long. */
const until = async (f: () => boolean, ms = 3000) => {
  const end = Date.now() + ms
  while (!f() && Date.now() < end) await sleep(10)
}

/** Runs `exe` for a moment and waits for it to exit; its pid. */
const runOnce = (exe: string) =>
  new Promise<number>((resolve, reject) => {
    const child = spawn(exe, ["0.05"], { stdio: "ignore" })
    child.once("error", reject)
    child.once("exit", () => resolve(child.pid!))
  })

interface Seen {
  readonly kind: number
  readonly pid: number
}

/** The discovery object loaded and attached, its ring read into `seen`. */
const watch = (mode: number | undefined, names: ReadonlyArray<string>) => {
  const obj: NativeObject = new addon.BpfObject(bpfObject("discovery"), "discovery")
  obj.load()
  const links = [
    obj.attachTracepoint("discovery_exec", "sched", "sched_process_exec"),
    obj.attachTracepoint("discovery_exit", "sched", "sched_process_exit")
  ]
  for (const name of names) obj.update("discovery_names", Buffer.from(nameKey(name)), Buffer.from([1]))
  if (mode !== undefined) obj.update("discovery_mode", u32(0), u32(mode))
  const seen: Array<Seen> = []
  const rb = obj.ringBuffer("events", (data, offsets, count) => {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
    for (let i = 0; i < count; i++) {
      const at = offsets[2 * i]!
      seen.push({ kind: view.getUint32(at, true), pid: view.getUint32(at + 4, true) })
    }
  }, 5, 4096)
  return {
    seen,
    setMode: (m: number) => obj.update("discovery_mode", u32(0), u32(m)),
    close: () => {
      rb.stop()
      for (const l of links) l.destroy()
      obj.close()
    }
  }
}

const of = (seen: ReadonlyArray<Seen>, pid: number) => seen.filter((s) => s.pid === pid).map((s) => s.kind)

describe("discovery's kernel filter", () => {
  it("filtering, sends the named file's exec (through a symlink too) and exit, and nothing of another", async () => {
    const w = watch(1, ["wanted-sleeper"])
    try {
      const a = await runOnce(wanted)
      const b = await runOnce(other)
      const c = await runOnce(link)
      // Records arrive in order: once c's exit is here, whatever was sent of b is too.
      await until(() => of(w.seen, c).length === 2)
      expect(of(w.seen, a)).toEqual([1, 2])
      expect(of(w.seen, b)).toEqual([])
      expect(of(w.seen, c)).toEqual([1, 2])
    } finally {
      w.close()
    }
  })

  it("by default, sends every exec and exit, named or not", async () => {
    const w = watch(undefined, ["wanted-sleeper"])
    try {
      const a = await runOnce(wanted)
      const b = await runOnce(other)
      await until(() => of(w.seen, b).length === 2)
      expect(of(w.seen, a)).toEqual([1, 2])
      expect(of(w.seen, b)).toEqual([1, 2])
    } finally {
      w.close()
    }
  })

  it("a named exec before filtering starts still has its exit sent after", async () => {
    const w = watch(undefined, ["wanted-sleeper"])
    try {
      // Alive well past the switch below (its exec record may wait up to the drain timer's 1 s).
      const child = spawn(wanted, ["2"], { stdio: "ignore" })
      const exited = new Promise<void>((r) => child.once("exit", () => r()))
      await until(() => of(w.seen, child.pid!).length === 1)
      expect(of(w.seen, child.pid!)).toEqual([1])
      // Filtering from now on: the process is remembered from its exec, so its exit still comes.
      w.setMode(1)
      expect(child.exitCode).toBeNull()
      await exited
      await until(() => of(w.seen, child.pid!).length === 2)
      expect(of(w.seen, child.pid!)).toEqual([1, 2])
    } finally {
      w.close()
    }
  })
})
