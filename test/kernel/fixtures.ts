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

interface BtfType {
  readonly id: number
  readonly kind: string
  readonly name?: string
  readonly size?: number
  readonly type_id?: number
  readonly members?: ReadonlyArray<{ readonly name: string; readonly type_id: number; readonly bits_offset: number }>
  readonly values?: ReadonlyArray<{ readonly name: string; readonly val: number }>
}

let vmlinux: { readonly types: ReadonlyMap<number, BtfType>; readonly resolve: (id: number) => BtfType } | undefined

/** The running kernel's BTF types (bpftool, read once), and a type id resolved through typedefs and qualifiers. */
const kernelBtf = () => {
  if (vmlinux === undefined) {
    const json = execFileSync("bpftool", ["-j", "btf", "dump", "file", "/sys/kernel/btf/vmlinux"], {
      maxBuffer: 1 << 30,
      env: { ...process.env, PATH: `${process.env["PATH"]}:/usr/sbin` }
    }).toString()
    const types = new Map<number, BtfType>()
    for (const t of (JSON.parse(json) as { types: Array<BtfType> }).types) types.set(t.id, t)
    const resolve = (id: number): BtfType => {
      let t = types.get(id)!
      while (t.members === undefined && t.type_id !== undefined) t = types.get(t.type_id)!
      return t
    }
    vmlinux = { types, resolve }
  }
  return vmlinux
}

/** The byte offset of each member of `t` from `base`, members of anonymous structs and unions as the holder's. */
const memberOffsets = (
  t: BtfType,
  base = 0,
  out: Record<string, number> = {},
  inner: (name: string, t: BtfType, at: number) => boolean = () => false
): Record<string, number> => {
  const { resolve } = kernelBtf()
  for (const m of t.members ?? []) {
    const at = base + m.bits_offset / 8
    const type = resolve(m.type_id)
    if (m.name === "" || m.name === "(anon)") memberOffsets(type, at, out, inner)
    else if (!inner(m.name, type, at)) out[m.name] = at
  }
  return out
}

/** A struct of the running kernel's BTF: its size and its members' byte offsets (anonymous members flattened). */
export const kernelStruct = (name: string): { readonly size: number; readonly offsets: Record<string, number> } => {
  const t = [...kernelBtf().types.values()].find((t) => t.kind === "STRUCT" && t.name === name)
  if (t === undefined) throw new Error(`the kernel's BTF has no struct ${name}`)
  return { size: t.size!, offsets: memberOffsets(t) }
}

/**
 * From the running kernel's BTF (bpftool): byte offsets of the `link_create` member of `union bpf_attr` that a
 * uprobe_multi link uses (the common head, then `uprobe_multi.*`), and the value of BPF_TRACE_UPROBE_MULTI.
 */
export const btfLinkCreateLayout = (): {
  readonly fields: Record<string, number>
  readonly uprobeMultiAttachType: number
} => {
  const { types, resolve } = kernelBtf()
  const attr = [...types.values()].find((t) => t.kind === "UNION" && t.name === "bpf_attr")!
  const linkCreate = attr.members!.find((m) => m.name === "link_create")!
  // uprobe_multi's own members are named with its prefix.
  const all: Record<string, number> = {}
  memberOffsets(resolve(linkCreate.type_id), 0, all, (name, type, at) => {
    if (name !== "uprobe_multi") return false
    for (const [k, v] of Object.entries(memberOffsets(type, at))) all[`uprobe_multi.${k}`] = v
    return true
  })
  const wanted = [
    "prog_fd", "target_fd", "attach_type", "flags", "uprobe_multi.path", "uprobe_multi.offsets",
    "uprobe_multi.ref_ctr_offsets", "uprobe_multi.cookies", "uprobe_multi.cnt", "uprobe_multi.flags", "uprobe_multi.pid"
  ]
  const fields = Object.fromEntries(wanted.map((w) => [w, all[w]!]))
  const attachType = [...types.values()].find((t) => t.kind === "ENUM" && t.name === "bpf_attach_type")!
  const uprobeMultiAttachType = attachType.values!.find((v) => v.name === "BPF_TRACE_UPROBE_MULTI")!.val
  return { fields, uprobeMultiAttachType }
}
