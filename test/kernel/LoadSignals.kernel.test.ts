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
import { expect, it } from "vitest"
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
