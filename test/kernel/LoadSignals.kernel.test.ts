/**
 * The verifier gives up with EAGAIN when the loading thread has a signal pending. A process that is profiled
 * (`--cpu-prof`: SIGPROF every interval) or has children (SIGCHLD) must still load its probes: the addon blocks
 * signals for the duration of a load. Checked in a child Node process sampled every 50 µs, which made every load
 * below fail before the fix.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { loadAddon } from "../../src/kernel/internal/addon.ts"
import { buildAll } from "./fixtures.ts"

buildAll()
const root = path.resolve(import.meta.dirname, "..", "..")

it("loads BPF objects while the process is being sampled by the CPU profiler", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-loadsig-"))
  const script = path.join(dir, "load.ts")
  fs.writeFileSync(
    script,
    `import { loadAddon } from ${JSON.stringify(path.join(root, "src", "kernel", "internal", "addon.ts"))}
const addon = loadAddon()
if (typeof addon === "string") throw new Error(addon)
for (const name of ["grpc", "nethttp_server", "database_sql"]) {
  const obj = new addon.BpfObject(${JSON.stringify(path.join(root, "bpf", "out"))} + "/" + name + ".bpf.o", name)
  try {
    obj.load()
    console.log(name + " loaded")
  } catch (e) {
    console.log(name + " " + String(e))
  } finally {
    obj.close()
  }
}
`
  )
  try {
    const out = execFileSync(process.execPath, [
      "--cpu-prof",
      `--cpu-prof-dir=${dir}`,
      "--cpu-prof-interval=50",
      script
    ]).toString()
    expect(out.trim().split("\n")).toEqual(["grpc loaded", "nethttp_server loaded", "database_sql loaded"])
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

describe("loadAsync", () => {
  const addon = loadAddon()
  if (typeof addon === "string") throw new Error(addon)
  const open = (name: string) => new addon.BpfObject(path.join(root, "bpf", "out", `${name}.bpf.o`), name)

  it("loads objects side by side off the event loop: timers keep firing while the verifier runs", async () => {
    const objects = ["grpc", "nethttp_server", "database_sql"].map(open)
    let ticks = 0
    const timer = setInterval(() => ticks++, 1)
    try {
      // The synchronous load holds the event loop for the whole verification: no tick gets in.
      const sync = open("kafka_go")
      const before = ticks
      sync.load()
      expect(ticks).toBe(before)
      sync.close()
      await Promise.all(objects.map((o) => o.loadAsync()))
      expect(ticks).toBeGreaterThan(0)
      // Loaded for real: the programs have kernel ids.
      for (const o of objects) expect(o.programs().every((p) => !p.autoload || p.id > 0)).toBe(true)
    } finally {
      clearInterval(timer)
      for (const o of objects) o.close()
    }
  })

  it("an object closed while it loads is closed when the load ends; the load rejects with ECANCELED", async () => {
    const fds = () => fs.readdirSync("/proc/self/fd").length
    const before = fds()
    const obj = open("grpc")
    const loading = obj.loadAsync()
    expect(() => obj.programs()).toThrow(/being loaded/)
    obj.close()
    const error = await loading.then(() => undefined, (e: unknown) => e as { code: string; message: string })
    expect(error?.code).toBe("ECANCELED")
    expect(error?.message).toBe("load: grpc was closed while loading: Operation canceled (ECANCELED)")
    expect(fds()).toBe(before)
  })
})
