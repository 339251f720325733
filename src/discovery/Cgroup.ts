/**
 * A process's cgroup, and the container and Kubernetes pod it names. Container runtimes put each container in a
 * cgroup whose last component carries the container's 64-hex id (docker `/docker/<id>` or
 * `/system.slice/docker-<id>.scope`, containerd/CRI `cri-containerd-<id>.scope` or `/kubepods/.../<id>`, cri-o
 * `crio-<id>.scope`, podman `libpod-<id>.scope`); the kubelet's pod cgroup carries the pod's uid
 * (`kubepods-burstable-pod<uid with _>.slice` under systemd, `/kubepods/burstable/pod<uid>` under cgroupfs).
 *
 * The parsing is pure (`parse`); `read` is the one place that touches /proc.
 */
import * as Fs from "node:fs"
import { Effect } from "effect"

/** What a process's /proc/PID/cgroup says. */
export interface CgroupInfo {
  /** The unified (v2) hierarchy's path, else the first hierarchy's; "/" when nothing else is known. */
  readonly path: string
  /** Every hierarchy's path (cgroup v1 has one per controller, v2 one); a `--cgroup` glob may match any of them. */
  readonly paths: ReadonlyArray<string>
  /** The 64-hex container id, when a path names one. */
  readonly containerId?: string
  /** The Kubernetes pod uid (dashed), when a path names one. */
  readonly podUid?: string
}

/**
 * A 64-hex id as a whole path component or after a runtime's prefix (`docker-`, `cri-containerd-`, `crio-`,
 * `libpod-`, ...), optionally followed by `.scope`. A conmon scope (`crio-conmon-<id>`) is cri-o's monitor, not the
 * container, and is not taken.
 */
const CONTAINER_ID = /(?:^|[/-])(?<!conmon-)([0-9a-f]{64})(?:\.scope)?(?=\/|$)/g

/** `pod` + a uid whose groups are separated by `-` (cgroupfs) or `_` (systemd, where `-` means nesting). */
const POD_UID = new RegExp(
  "pod([0-9a-f]{8})[-_]([0-9a-f]{4})[-_]([0-9a-f]{4})[-_]([0-9a-f]{4})[-_]([0-9a-f]{12})(?:\\.slice)?(?=/|$)"
)

/** The container id a cgroup path names (the innermost one), or undefined. */
export const containerIdOf = (path: string): string | undefined => {
  let id: string | undefined
  for (const m of path.matchAll(CONTAINER_ID)) id = m[1]
  return id
}

/** The pod uid a cgroup path names, dashed as Kubernetes writes it, or undefined. */
export const podUidOf = (path: string): string | undefined => {
  const m = POD_UID.exec(path)
  return m === null ? undefined : m.slice(1, 6).join("-")
}

/**
 * Parses /proc/PID/cgroup: `hierarchy-id:controllers:path` per line (`0::/path` for cgroup v2). The container and
 * pod come from the v2 path when it names them, else from any v1 path that does (a v1 or hybrid host may leave the
 * unified hierarchy at "/").
 */
export const parse = (text: string): CgroupInfo => {
  const entries: Array<{ readonly v2: boolean; readonly path: string }> = []
  for (const line of text.split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim())
    if (m === null) continue
    entries.push({ v2: m[1] === "0" && m[2] === "", path: m[3]! === "" ? "/" : m[3]! })
  }
  const ordered = [...entries.filter((e) => e.v2), ...entries.filter((e) => !e.v2)]
  const paths = [...new Set(ordered.map((e) => e.path))]
  const containerId = paths.map(containerIdOf).find((id) => id !== undefined)
  const podUid = paths.map(podUidOf).find((uid) => uid !== undefined)
  return {
    path: paths[0] ?? "/",
    paths,
    ...(containerId === undefined ? {} : { containerId }),
    ...(podUid === undefined ? {} : { podUid })
  }
}

/** The cgroup of a running process; a process that is gone (or unreadable) has none that is known: "/". */
export const read = (pid: number): Effect.Effect<CgroupInfo> =>
  Effect.sync(() => {
    try {
      return parse(Fs.readFileSync(`/proc/${pid}/cgroup`, "utf8"))
    } catch {
      return { path: "/", paths: [] }
    }
  })

/** `read` without Effect, for matchers that run inside discovery's stream. */
export const readSync = (pid: number): CgroupInfo => Effect.runSync(read(pid))
