/** Helpers of the kernel tests: build the Go fixture, drive the fixture process. */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process"
import { mkdirSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

/** Path of a compiled BPF object in bpf/out/. */
export const bpfObject = (name: string): string => path.join(root, "bpf", "out", `${name}.bpf.o`)

/** Builds the addon and the BPF objects (both idempotent and quick when nothing changed). */
export const buildAll = (): void => {
  execFileSync(process.execPath, [path.join(root, "scripts", "build-native.mjs")], { cwd: root, stdio: "inherit" })
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { cwd: root, stdio: "inherit" })
}

/** Builds test/fixtures/go/roundtrip into test/.cache/ and returns the binary's path. */
export const buildRoundtrip = (): string => {
  const out = path.join(root, "test", ".cache", "roundtrip")
  mkdirSync(path.dirname(out), { recursive: true })
  execFileSync("go", ["build", "-o", out, "."], {
    cwd: path.join(root, "test", "fixtures", "go", "roundtrip"),
    stdio: "inherit",
    env: { ...process.env, GOFLAGS: "-mod=mod", GOTOOLCHAIN: process.env["GOTOOLCHAIN"] ?? "local" }
  })
  return out
}

/** A running roundtrip fixture: `call(count, arg)` makes it call roundtripTarget(arg) count times. */
export interface Roundtrip {
  readonly pid: number
  readonly call: (count: number, arg: number) => Promise<void>
  readonly stop: () => void
}

export const startRoundtrip = (binary: string): Promise<Roundtrip> =>
  new Promise((resolve, reject) => {
    const child: ChildProcessWithoutNullStreams = spawn(binary, [], { stdio: ["pipe", "pipe", "pipe"] })
    let buffered = ""
    const waiters: Array<() => void> = []
    child.on("error", reject)
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (chunk: string) => {
      buffered += chunk
      let nl: number
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        if (line === "ready") {
          resolve({
            pid: child.pid!,
            call: (count, arg) =>
              new Promise((done) => {
                waiters.push(done)
                child.stdin.write(`${count} ${arg}\n`)
              }),
            stop: () => {
              child.stdin.end()
              child.kill("SIGKILL")
            }
          })
        } else if (line === "ok") {
          waiters.shift()?.()
        }
      }
    })
  })

/** A PID that no process has now (above the kernel's pid_max is always free). */
export const deadPid = (): number => Number(readFileSync("/proc/sys/kernel/pid_max", "utf8").trim()) + 1
