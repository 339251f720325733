/**
 * Which processes listen on which TCP ports: the kernel's socket tables (/proc/PID/net/tcp and tcp6, one pair per
 * network namespace) give each listening socket's port and inode, and a process owns a socket when one of its fds
 * links to `socket:[inode]`. The parsing is pure (`parseListening`); the rest reads /proc.
 *
 * Containers have network namespaces of their own, so the tables are read once per namespace found among the
 * processes, through one process in it: a port is the one the process itself listens on, inside its namespace (not
 * a port the host publishes for it).
 */
import * as Fs from "node:fs"

/** A listening TCP socket. */
export interface Listener {
  readonly port: number
  readonly inode: number
}

/** TCP_LISTEN in the `st` column. */
const LISTEN = "0A"

/**
 * The listening sockets of one /proc/net/tcp or tcp6 table: `sl local_address rem_address st ... uid timeout inode`,
 * the local address as hex `ADDR:PORT` (IPv4 8 hex digits, IPv6 32). The header and malformed lines are skipped.
 */
export const parseListening = (text: string): ReadonlyArray<Listener> => {
  const out: Array<Listener> = []
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/)
    if (f.length < 10 || !/^\d+:$/.test(f[0]!) || f[3] !== LISTEN) continue
    const local = /^(?:[0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})$/.exec(f[1]!)
    const inode = Number(f[9])
    if (local === null || !Number.isSafeInteger(inode) || inode <= 0) continue
    out.push({ port: parseInt(local[1]!, 16), inode })
  }
  return out
}

/** The socket inode an fd link names (`socket:[12345]`), or undefined. */
export const socketInode = (link: string): number | undefined => {
  const m = /^socket:\[(\d+)\]$/.exec(link)
  return m === null ? undefined : Number(m[1])
}

const readText = (file: string): string => {
  try {
    return Fs.readFileSync(file, "utf8")
  } catch {
    return ""
  }
}

const pidsOf = (): ReadonlyArray<number> => {
  try {
    return Fs.readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number)
  } catch {
    return []
  }
}

/** The network namespace a process is in (`net:[4026531840]`), or undefined when it is gone. */
const netnsOf = (pid: number): string | undefined => {
  try {
    return Fs.readlinkSync(`/proc/${pid}/ns/net`)
  } catch {
    return undefined
  }
}

/**
 * The inodes of sockets listening on any of `ports`, over every network namespace of the running processes (each
 * namespace's tables read once, through the first process found in it).
 */
export const listeningInodes = (ports: ReadonlySet<number>): Map<number, number> => {
  const seen = new Set<string>()
  const inodes = new Map<number, number>()
  for (const pid of pidsOf()) {
    const ns = netnsOf(pid)
    if (ns === undefined || seen.has(ns)) continue
    seen.add(ns)
    for (const table of ["tcp", "tcp6"]) {
      for (const l of parseListening(readText(`/proc/${pid}/net/${table}`))) {
        if (ports.has(l.port)) inodes.set(l.inode, l.port)
      }
    }
  }
  return inodes
}

/** The socket inodes a process holds open. */
export const socketsOf = (pid: number): ReadonlyArray<number> => {
  let fds: Array<string>
  try {
    fds = Fs.readdirSync(`/proc/${pid}/fd`)
  } catch {
    return []
  }
  const out: Array<number> = []
  for (const fd of fds) {
    try {
      const inode = socketInode(Fs.readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (inode !== undefined) out.push(inode)
    } catch {
      // closed meanwhile
    }
  }
  return out
}

/** Which processes hold which of `inodes` (inode -> port): pid -> the ports it listens on among them. */
export const owners = (
  inodes: ReadonlyMap<number, number>,
  pids: Iterable<number> = pidsOf()
): Map<number, Array<number>> => {
  const out = new Map<number, Array<number>>()
  if (inodes.size === 0) return out
  for (const pid of pids) {
    for (const inode of socketsOf(pid)) {
      const port = inodes.get(inode)
      if (port === undefined) continue
      const ports = out.get(pid) ?? []
      if (!ports.includes(port)) ports.push(port)
      out.set(pid, ports)
    }
  }
  return out
}

/** The processes listening on any of `ports` now (pid -> its ports among them). */
export const listeners = (ports: ReadonlySet<number>): Map<number, Array<number>> => owners(listeningInodes(ports))
