/**
 * Which libraries a process's dynamic loader will map: the DT_NEEDED closure of its executable, each name found as
 * the loader finds it (LD_LIBRARY_PATH, the requesting object's RUNPATH or RPATH with $ORIGIN, then the default
 * directories), in the process's root. For a process found at exec, before its loader has mapped them
 * (`ProcessTarget.mappedLibraries` waits for those). Not ld.so.cache: the default directories hold what Debian's cache
 * lists; a library only the cache knows elsewhere is not followed (its own needs are not waited for).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { readNeeds } from "./Needed.ts"

/** Where the dynamic loader looks by default on this architecture (Debian's multiarch first). */
export const LIBRARY_DIRS = [
  "/lib/x86_64-linux-gnu",
  "/usr/lib/x86_64-linux-gnu",
  "/lib64",
  "/usr/lib64",
  "/lib",
  "/usr/lib",
  "/usr/local/lib"
]

/** A library's file name `file` names `name` when it is `name` or `name` plus a version (libz.so.1.2.13, libz.so.1). */
export const isNamed = (file: string, name: string) => file === name || file.startsWith(`${name}.`)

/** At most this many objects are followed (a desktop program's closure is ~100). */
const MAX_OBJECTS = 256

/** Closures by executable (device, inode, change time) and LD_LIBRARY_PATH: processes of one program share theirs. */
const closures = new Map<string, ReadonlySet<string>>()
const MAX_CLOSURES = 256

/** The regular file at `p`, if there is one: never a FIFO or a device, which opening could block on. */
const isFile = (p: string) => {
  try {
    return fs.statSync(p).isFile()
  } catch {
    return false
  }
}

/** The names of the DT_NEEDED closure of process `pid`'s executable (empty when it cannot be read). */
const closureOf = (pid: number): ReadonlySet<string> => {
  const root = `/proc/${pid}/root`
  let exe: string
  let key: string
  let searchPath: ReadonlyArray<string>
  try {
    exe = fs.readlinkSync(`/proc/${pid}/exe`)
    const st = fs.statSync(`/proc/${pid}/exe`, { bigint: true })
    const environ = fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")
    const ld = environ.find((e) => e.startsWith("LD_LIBRARY_PATH="))?.slice("LD_LIBRARY_PATH=".length) ?? ""
    searchPath = ld.split(/[:;]/).filter((d) => d.startsWith("/"))
    key = `${st.dev}:${st.ino}:${st.ctimeNs}:${ld}`
  } catch {
    return new Set()
  }
  const known = closures.get(key)
  if (known !== undefined) return known
  const names = new Set<string>()
  // Breadth first, as the loader goes: each object's needs, found from that object's directory and RUNPATH.
  const queue: Array<{ readonly file: string; readonly dir: string }> = [
    { file: `${root}${exe}`, dir: path.dirname(exe) }
  ]
  for (let seen = 0; queue.length > 0 && seen < MAX_OBJECTS; seen++) {
    const { dir, file } = queue.shift()!
    const needs = readNeeds(file)
    const runpath = needs.runpath.split(":").filter((d) => d !== "")
      .map((d) => d.replace(/\$(\{ORIGIN\}|ORIGIN)/g, dir))
    for (const name of needs.needed) {
      if (names.has(name)) continue
      names.add(name)
      const dirs = name.includes("/") ? [""] : [...searchPath, ...runpath, ...LIBRARY_DIRS]
      const found = dirs.map((d) => (d === "" ? name : path.join(d, name))).find((p) => isFile(`${root}${p}`))
      if (found !== undefined) queue.push({ file: `${root}${found}`, dir: path.dirname(found) })
    }
  }
  if (closures.size >= MAX_CLOSURES) closures.delete(closures.keys().next().value!)
  closures.set(key, names)
  return names
}

/** The names among `names` that process `pid`'s loader will map (in its executable's DT_NEEDED closure). */
export const willMap = (pid: number, names: ReadonlyArray<string>): ReadonlyArray<string> => {
  const closure = closureOf(pid)
  return names.filter((n) => [...closure].some((c) => isNamed(c, n)))
}
