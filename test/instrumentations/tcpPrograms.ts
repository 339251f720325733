/**
 * TCP programs for the TCP metrics tests on the real kernel: one small Python program in six roles (servers and
 * clients), run in a network namespace of the test's own (loopback only), started by the test and driven line by
 * line over stdin/stdout; and a cgroup whose sockets lose their first data segment (bpf/test/tcp_drop.bpf.c).
 *
 *   const net = makeNetns("tcp")     // in beforeAll; net.remove() in afterAll
 *   const server = yield* net.start("server", "128", "5")
 *   yield* server.go; const port = Number(yield* server.line)
 *
 * The namespace keeps the traffic away from other tests' and fixes the TCP settings the counts depend on: since
 * Linux 6.7 the first SYN retransmissions are 1 s apart by default (net.ipv4.tcp_syn_linear_timeouts=4), which makes
 * a TCP_SYNCNT=1 connect retransmit its SYN twice before it times out; with plain exponential backoff (0, set here)
 * it retransmits once (after 1 s) and times out after 3 s.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import { Effect } from "effect"

/**
 * One program, six roles; each waits for a "go" line on stdin (so the test can select it first) and prints what
 * the test needs on stdout, one line each.
 * - server BACKLOG ACCEPTS [dual]: listen on 127.0.0.1 (dual: on every IPv6 and IPv4 address, one AF_INET6 socket),
 *   print the port; accept ACCEPTS connections, read each to EOF, close.
 * - client PORT N [HOST]: N connections to HOST:PORT (default 127.0.0.1), each sends one byte and closes; then one
 *   connect to a bound port nobody listens on (refused). Prints that port, then "done".
 * - syn PORT: one connection to PORT (left in its accept queue), then a connect with TCP_SYNCNT=1 that times out;
 *   prints the connect's errno, closes the first connection with a reset (SO_LINGER 0), then "done".
 * - reset PORT N: N connections to PORT, each closed at once with a reset (SO_LINGER 0); then "done".
 * - greeter: listen on 127.0.0.1, print the port; accept one connection, send "hello", read it to EOF, close.
 * - greeted PORT: connect to PORT, read the 5-byte greeting, send one byte, close; then "done".
 * Every role then waits for stdin to close before exiting.
 */
export const PROGRAM = `
import socket, struct, sys
role = sys.argv[1]
sys.stdin.readline()
if role == "server":
    if sys.argv[4:] == ["dual"]:
        s = socket.socket(socket.AF_INET6)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
    else:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
    s.listen(int(sys.argv[2]))
    print(s.getsockname()[1], flush=True)
    for _ in range(int(sys.argv[3])):
        c, _ = s.accept()
        while c.recv(64):
            pass
        c.close()
elif role == "client":
    port, n = int(sys.argv[2]), int(sys.argv[3])
    host = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    for _ in range(n):
        c = socket.create_connection((host, port))
        c.sendall(b"x")
        c.close()
    b = socket.socket()
    b.bind(("127.0.0.1", 0))
    print(b.getsockname()[1], flush=True)
    try:
        socket.create_connection(("127.0.0.1", b.getsockname()[1]))
    except ConnectionRefusedError:
        pass
    print("done", flush=True)
elif role == "syn":
    port = int(sys.argv[2])
    a = socket.create_connection(("127.0.0.1", port))
    b = socket.socket()
    b.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
    try:
        b.connect(("127.0.0.1", port))
        print("connected", flush=True)
    except OSError as e:
        print(e.errno, flush=True)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    a.close()
    b.close()
    print("done", flush=True)
elif role == "greeter":
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    print(s.getsockname()[1], flush=True)
    c, _ = s.accept()
    c.sendall(b"hello")
    while c.recv(64):
        pass
    c.close()
elif role == "greeted":
    c = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    got = b""
    while len(got) < 5:
        got += c.recv(5 - len(got))
    c.sendall(b"x")
    c.close()
    print("done", flush=True)
elif role == "reset":
    for _ in range(int(sys.argv[3])):
        c = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    print("done", flush=True)
sys.stdin.read()
`

export interface Program {
  readonly pid: number
  readonly child: ChildProcess
  /** The next line it prints. */
  readonly line: Effect.Effect<string>
  /** Send "go". */
  readonly go: Effect.Effect<void>
}

/** End a program (close its stdin) and wait for it to exit. */
export const finish = (p: Program) =>
  Effect.callback<void>((resume) => {
    if (p.child.exitCode !== null) return resume(Effect.void)
    p.child.once("exit", () => resume(Effect.void))
    p.child.stdin!.end()
  })

/** A network namespace with loopback up, and the programs started in it. */
export interface Netns {
  readonly name: string
  /** Start the program in `role` with its arguments, inside the namespace. */
  readonly start: (...args: ReadonlyArray<string>) => Effect.Effect<Program>
  /** Kill what is left of the programs and delete the namespace. */
  readonly remove: () => void
}

const IP = fs.existsSync("/usr/sbin/ip") ? "/usr/sbin/ip" : "ip"
/** The system's Python, not a version manager's shim (a script that execs it: the pid's executable would change). */
const PYTHON = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"

/** Create a namespace named after this test process and `tag`. */
export const makeNetns = (tag: string): Netns => {
  const name = `probescope-${tag}-${process.pid}`
  const programs: Array<ChildProcess> = []
  execFileSync(IP, ["netns", "add", name])
  execFileSync(IP, ["-n", name, "link", "set", "lo", "up"])
  execFileSync(IP, ["netns", "exec", name, "sysctl", "-q", "-w", "net.ipv4.tcp_syn_linear_timeouts=0"])
  const start = (...args: ReadonlyArray<string>) =>
    Effect.sync((): Program => {
      // `ip netns exec` execs the program in place: the pid is the program's.
      const child = spawn(IP, ["netns", "exec", name, PYTHON, "-c", PROGRAM, ...args], {
        stdio: ["pipe", "pipe", "inherit"]
      })
      programs.push(child)
      const lines: Array<string> = []
      const waiting: Array<(line: string) => void> = []
      let buffered = ""
      child.stdout!.on("data", (chunk: Buffer) => {
        buffered += chunk.toString()
        let nl: number
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl)
          buffered = buffered.slice(nl + 1)
          const w = waiting.shift()
          if (w !== undefined) w(line)
          else lines.push(line)
        }
      })
      return {
        pid: child.pid!,
        child,
        line: Effect.callback<string>((resume) => {
          const l = lines.shift()
          if (l !== undefined) resume(Effect.succeed(l))
          else waiting.push((x) => resume(Effect.succeed(x)))
        }).pipe(Effect.timeout("20 seconds"), Effect.orDie),
        go: Effect.sync(() => void child.stdin!.write("go\n"))
      }
    })
  return {
    name,
    start,
    remove: () => {
      for (const p of programs) p.kill("SIGKILL")
      execFileSync(IP, ["netns", "delete", name])
    }
  }
}

/** A cgroup (v2) of the test's own; processes moved into it before they make sockets. */
export interface Cgroup {
  readonly path: string
  readonly add: (pid: number) => void
  /** Remove it (its processes must have exited). */
  readonly remove: () => void
}

/** Create a cgroup under the cgroup v2 mount, named after this test process and `tag`. */
export const makeCgroup = (tag: string): Cgroup => {
  const mount = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => / - cgroup2 /.test(l))
  if (mount === undefined) throw new Error("no cgroup v2 mount")
  const path = `${mount.split(" ")[4]}/probescope-${tag}-${process.pid}`
  fs.mkdirSync(path, { recursive: true })
  return {
    path,
    add: (pid) => fs.writeFileSync(`${path}/cgroup.procs`, `${pid}\n`),
    remove: () => fs.rmdirSync(path)
  }
}
