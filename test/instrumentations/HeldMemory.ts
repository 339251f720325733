/**
 * Memory laid out as a Go program has it, in a live process, for the tests of what user space reads when the kernel
 * could not (GoSymbols' readers and the probes' `readCold`): a Python process writes the bytes a test builds for the
 * address it chose, and is killed with the test's scope.
 */
import { spawn } from "node:child_process"
import { Effect } from "effect"

/** A process holding `layout(base)` at `base`, an address it chose: the bytes are written once it has told it. */
export const holding = (layout: (base: bigint) => Buffer) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly pid: number; readonly base: bigint; readonly kill: () => void }>((resume) => {
      const script = "import ctypes, sys\n" +
        "buf = ctypes.create_string_buffer(4096)\n" +
        "print(ctypes.addressof(buf), flush=True)\n" +
        "data = bytes.fromhex(sys.stdin.readline().strip())\n" +
        "ctypes.memmove(buf, data, len(data))\n" +
        "print('ok', flush=True)\n" +
        "sys.stdin.read()\n"
      const child = spawn("python3", ["-c", script], { stdio: ["pipe", "pipe", "inherit"] })
      let out = ""
      let base = 0n
      child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString()
        const lines = out.split("\n")
        if (base === 0n && lines.length > 1) {
          base = BigInt(lines[0]!)
          child.stdin!.write(`${layout(base).toString("hex")}\n`)
        }
        if (lines.includes("ok")) resume(Effect.succeed({ pid: child.pid!, base, kill: () => child.kill("SIGKILL") }))
      })
    }),
    (p) => Effect.sync(p.kill)
  )

/** A runtime name: flags, a one-byte length, the bytes. */
export const name = (s: string) => Buffer.concat([Buffer.from([0, s.length]), Buffer.from(s)])

/** 48 bytes of internal/abi.Type: TFlag at 20, Kind_ at 23, Str (a nameOff from `types`) at 40. */
export const type = (tflag: number, kind: number, nameOff: number) => {
  const b = Buffer.alloc(48)
  b[20] = tflag
  b[23] = kind
  b.writeInt32LE(nameOff, 40)
  return b
}

/** Little-endian 64-bit words. */
export const words = (...ws: ReadonlyArray<bigint>) => {
  const b = Buffer.alloc(8 * ws.length)
  ws.forEach((w, i) => b.writeBigInt64LE(BigInt.asIntN(64, w), 8 * i))
  return b
}

