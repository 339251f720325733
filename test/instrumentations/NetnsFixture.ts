/**
 * Two "hosts" on one machine, for the tcp_context tests: two network namespaces linked by a veth pair with private
 * addresses (10.200.<n>.1/30 and fd00:200:<n>::1/64 for the server side, .2 and ::2 for the client side), and two
 * cgroup v2 directories under a common one, one per side, so an agent's sock_ops program attached to one of them sees
 * only that side's sockets (and one attached to the common one sees both). Names are unique per run; everything is
 * removed when the scope closes, whether the test passed or not.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import { cgroup2Root } from "../../src/probe/internal/attacher.ts"

/** One side: its namespace, its cgroup directory, its address. */
export interface Side {
  readonly netns: string
  readonly cgroup: string
  readonly ip: string
  /** Its IPv6 address (fd00:200:<n>::1 or ::2, /64, no duplicate address detection so it is usable at once). */
  readonly ip6: string
  /** argv prefix that runs a command in this side's cgroup and namespace. */
  readonly run: (argv: ReadonlyArray<string>) => ReadonlyArray<string>
}

export interface Pair {
  readonly server: Side
  readonly client: Side
  /** The cgroup both sides' cgroups are in (for one agent serving both). */
  readonly cgroup: string
}

let counter = 0

const ip = (args: ReadonlyArray<string>) =>
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"], timeout: 10_000 })

/** Removes a cgroup directory once its processes are gone (they are killed by then; the kernel may lag a moment). */
const removeCgroup = (dir: string) => {
  for (let i = 0; i < 100; i++) {
    try {
      fs.rmdirSync(dir)
      return
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return
      execFileSync("sleep", ["0.05"])
    }
  }
}

/**
 * Makes the pair (as root). The subnet's third octet is drawn from the pid and a counter, so concurrent suites do not
 * share one; the addresses are only routed inside the two namespaces.
 */
export const makePair = Effect.acquireRelease(
  Effect.sync((): Pair => {
    const root = cgroup2Root()
    if (root === undefined) throw new Error("no cgroup v2 mount")
    const n = counter++
    const tag = `${process.pid % 100000}${n}`
    const octet = (process.pid * 7 + n * 13) % 250 + 1
    const names = { server: `pstc${tag}s`, client: `pstc${tag}c` }
    const parent = path.join(root, `pstc-${tag}`)
    const cgroups = { server: path.join(parent, "server"), client: path.join(parent, "client") }
    fs.mkdirSync(parent)
    for (const c of Object.values(cgroups)) fs.mkdirSync(c)
    ip(["netns", "add", names.server])
    ip(["netns", "add", names.client])
    ip(["link", "add", names.server, "type", "veth", "peer", "name", names.client])
    ip(["link", "set", names.server, "netns", names.server])
    ip(["link", "set", names.client, "netns", names.client])
    const addrs = { server: `10.200.${octet}.1`, client: `10.200.${octet}.2` }
    const addrs6 = { server: `fd00:200:${octet}::1`, client: `fd00:200:${octet}::2` }
    for (const side of ["server", "client"] as const) {
      const ns = names[side]
      ip(["-n", ns, "addr", "add", `${addrs[side]}/30`, "dev", ns])
      ip(["-n", ns, "addr", "add", `${addrs6[side]}/64`, "dev", ns, "nodad"])
      ip(["-n", ns, "link", "set", ns, "up"])
      ip(["-n", ns, "link", "set", "lo", "up"])
    }
    const side = (s: "server" | "client"): Side => ({
      netns: names[s],
      cgroup: cgroups[s],
      ip: addrs[s],
      ip6: addrs6[s],
      run: (argv) => [
        "sh",
        "-c",
        `echo $$ > ${cgroups[s]}/cgroup.procs && exec ip netns exec ${names[s]} "$@"`,
        "sh",
        ...argv
      ]
    })
    return { server: side("server"), client: side("client"), cgroup: parent }
  }),
  (pair) =>
    Effect.sync(() => {
      for (const s of [pair.server, pair.client]) {
        // Any process left in the cgroup (a test that failed midway) goes first, then the namespace (and its veth).
        try {
          for (const pid of fs.readFileSync(path.join(s.cgroup, "cgroup.procs"), "utf8").split("\n")) {
            if (pid !== "") process.kill(Number(pid), "SIGKILL")
          }
        } catch {
          // already gone
        }
        try {
          ip(["netns", "del", s.netns])
        } catch {
          // already gone
        }
        removeCgroup(s.cgroup)
      }
      removeCgroup(pair.cgroup)
    })
)
