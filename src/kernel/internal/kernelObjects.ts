/** Listings of live kernel BPF objects, for leak checks in tests and for `probescope doctor`. */
import { execFile } from "node:child_process"
import { readdirSync, readlinkSync } from "node:fs"
import { promisify } from "node:util"

const run = promisify(execFile)

/** Counts of this process's BPF-related file descriptors, by kind. */
export interface OwnFds {
  readonly progs: number
  readonly maps: number
  readonly links: number
  readonly perfEvents: number
}

/** Reads /proc/self/fd: each program, map, link and perf event we hold is one anonymous-inode fd. */
export const ownBpfFds = (): OwnFds => {
  const counts = { progs: 0, maps: 0, links: 0, perfEvents: 0 }
  let entries: Array<string> = []
  try {
    entries = readdirSync("/proc/self/fd")
  } catch {
    return counts
  }
  for (const fd of entries) {
    let target: string
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`)
    } catch {
      continue
    }
    if (target === "anon_inode:bpf-prog") counts.progs++
    else if (target === "anon_inode:bpf-map") counts.maps++
    else if (target === "anon_inode:bpf_link") counts.links++
    else if (target === "anon_inode:[perf_event]") counts.perfEvents++
  }
  return counts
}

/** A program or link as `bpftool -j` reports it. */
export interface KernelProgram {
  readonly id: number
  readonly name: string
  readonly type: string
}

/** Link types newer than the bpftool here (7.1 prints their number): the kernel UAPI's `enum bpf_link_type`. */
const newerLinkTypes: Readonly<Record<string, string>> = {
  "10": "netfilter",
  "11": "tcx",
  "12": "uprobe_multi",
  "13": "netkit",
  "14": "sockmap"
}
const linkTypeName = (type: string): string => newerLinkTypes[type] ?? type

export interface KernelLink {
  readonly id: number
  readonly progId: number
  readonly type: string
}

/** Every BPF program and link loaded in the kernel (any process), via bpftool. */
export const kernelObjects = async (): Promise<{
  readonly programs: ReadonlyArray<KernelProgram>
  readonly links: ReadonlyArray<KernelLink>
}> => {
  const [progs, links] = await Promise.all([
    run("bpftool", ["-j", "prog", "show"], { maxBuffer: 64 << 20 }),
    run("bpftool", ["-j", "link", "show"], { maxBuffer: 64 << 20 })
  ])
  const programs = (JSON.parse(progs.stdout || "[]") as Array<Record<string, unknown>>).map((p) => ({
    id: Number(p["id"]),
    name: String(p["name"] ?? ""),
    type: String(p["type"] ?? "")
  }))
  const linkList = (JSON.parse(links.stdout || "[]") as Array<Record<string, unknown>>).map((l) => ({
    id: Number(l["id"]),
    progId: Number(l["prog_id"]),
    type: linkTypeName(String(l["type"] ?? ""))
  }))
  return { programs, links: linkList }
}
