/** Helpers of the kernel tests: build the Go fixture, compute file offsets, drive the fixture process. */
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

/**
 * File offset of an ELF64 symbol's first instruction: its virtual address mapped through the PT_LOAD segment that
 * contains it. Enough for a Go executable; not a general ELF reader.
 */
export const symbolFileOffset = (binary: string, symbol: string): number => {
  const elf = readFileSync(binary)
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) throw new Error(`${binary} is not an ELF64 file`)
  const shoff = Number(elf.readBigUInt64LE(0x28))
  const shentsize = elf.readUInt16LE(0x3a)
  const shnum = elf.readUInt16LE(0x3c)
  const phoff = Number(elf.readBigUInt64LE(0x20))
  const phentsize = elf.readUInt16LE(0x36)
  const phnum = elf.readUInt16LE(0x38)
  const section = (i: number) => {
    const base = shoff + i * shentsize
    return {
      type: elf.readUInt32LE(base + 4),
      offset: Number(elf.readBigUInt64LE(base + 0x18)),
      size: Number(elf.readBigUInt64LE(base + 0x20)),
      link: elf.readUInt32LE(base + 0x28),
      entsize: Number(elf.readBigUInt64LE(base + 0x38))
    }
  }
  let address: bigint | undefined
  for (let i = 0; i < shnum && address === undefined; i++) {
    const symtab = section(i)
    if (symtab.type !== 2) continue // SHT_SYMTAB
    const strtab = section(symtab.link)
    for (let off = symtab.offset; off < symtab.offset + symtab.size; off += symtab.entsize) {
      const nameOff = elf.readUInt32LE(off)
      const start = strtab.offset + nameOff
      const end = elf.indexOf(0, start)
      if (elf.toString("latin1", start, end) === symbol) {
        address = elf.readBigUInt64LE(off + 8)
        break
      }
    }
  }
  if (address === undefined) throw new Error(`symbol ${symbol} not in ${binary}`)
  for (let i = 0; i < phnum; i++) {
    const base = phoff + i * phentsize
    if (elf.readUInt32LE(base) !== 1) continue // PT_LOAD
    const offset = elf.readBigUInt64LE(base + 8)
    const vaddr = elf.readBigUInt64LE(base + 0x10)
    const filesz = elf.readBigUInt64LE(base + 0x20)
    if (address >= vaddr && address < vaddr + filesz) return Number(address - vaddr + offset)
  }
  throw new Error(`symbol ${symbol} is in no loadable segment`)
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
