/**
 * Selection the way operators think, from the outside: `probescope run` selecting the example backend by the port it
 * listens on (inside a network namespace and a docker-named cgroup the test makes), by an executable glob (in a
 * Kubernetes-named cgroup, with its arguments turned on), and by cgroup glob and container prefix together (one
 * process running before the agent, one after). Every span reaches the receiver with the host and container in its
 * resource. Then the bad selectors: one line each, with its exit code.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { afterAll, beforeAll } from "vitest"
import { buildExample } from "../instrumentations/fixtures.ts"
import * as Receiver from "../receiver/Receiver.ts"
import { agentEnv, attachedLine, cli, get, root, runCli, spawnProc } from "./harness.ts"

/** The cgroup v2 hierarchy, wherever this machine mounts it. */
const cgroupRoot = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n")
  .map((l) => l.split(" "))
  .find((f) => f[f.indexOf("-") + 1] === "cgroup2")?.[4] ?? "/sys/fs/cgroup"

const hostResource = {
  "host.name": os.hostname(),
  "host.id": fs.readFileSync("/etc/machine-id", "utf8").trim(),
  "os.type": "linux"
}

const run = crypto.randomBytes(4).toString("hex")
/** Every cgroup the tests make lives under this one, removed at the end. */
const top = `probescope-e2e-${run}`
const hex64 = () => crypto.randomBytes(32).toString("hex")

let work = ""
let backendSrc = ""
const made: Array<string> = []

beforeAll(() => {
  execFileSync("make", ["-C", path.join(root, "bpf")], { stdio: "ignore" })
  backendSrc = path.join(buildExample("1.26.8"), "backend")
  work = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-selection-"))
}, 900_000)

afterAll(() => {
  // Deepest first: a cgroup is removed only once it has no children and no processes.
  for (const dir of made.sort((a, b) => b.length - a.length)) {
    try {
      fs.rmdirSync(dir)
    } catch {
      // a process of it may still be exiting; the kernel keeps an empty cgroup harmlessly
    }
  }
  if (work !== "") fs.rmSync(work, { recursive: true, force: true })
})

/** Makes a cgroup (and its parents) under the test's own; returns its path as /proc/PID/cgroup shows it. */
const makeCgroup = (relative: string): string => {
  let dir = cgroupRoot
  for (const part of `${top}/${relative}`.split("/")) {
    dir = path.join(dir, part)
    if (!fs.existsSync(dir)) {
      fs.mkdirSync(dir)
      made.push(dir)
    }
  }
  return `/${top}/${relative}`
}

/** A private copy of the backend at `relative` under the test's folder (so globs match only the test's own). */
const backendAt = (relative: string): string => {
  const exe = path.join(work, relative)
  fs.mkdirSync(path.dirname(exe), { recursive: true })
  fs.copyFileSync(backendSrc, exe)
  fs.chmodSync(exe, 0o755)
  return exe
}

/** A free loopback port (bound and released). */
const freePort = Effect.promise(() =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })
)

/**
 * Starts the backend in `cgroup` (joined before the exec, as a container runtime does), optionally in a new network
 * namespace with only loopback up, listening on 127.0.0.1:`port`.
 */
const startInCgroup = (exe: string, cgroup: string, port: number, netns: boolean) =>
  Effect.gen(function*() {
    const procs = path.join(cgroupRoot, cgroup, "cgroup.procs")
    const script = `${netns ? "ip link set lo up && " : ""}echo $$ > ${procs} && exec "$0" -addr 127.0.0.1:${port}`
    const proc = netns
      ? yield* spawnProc("unshare", ["-n", "sh", "-c", script, exe])
      : yield* spawnProc("sh", ["-c", script, exe])
    yield* proc.line("stdout", /^listening on (\S+)$/m, "30 seconds")
    return proc
  })

/** GET in the process's network namespace (curl through nsenter), else from here. */
const getIn = (pid: number, url: string, netns: boolean) =>
  netns
    ? Effect.sync(() =>
      Number(
        execFileSync("nsenter", [
          `--net=/proc/${pid}/ns/net`,
          ...["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url]
        ]).toString()
      )
    )
    : get(url)

const agentWith = (args: ReadonlyArray<string>, receiver: Receiver.Receiver, extra: Record<string, string> = {}) =>
  spawnProc(
    cli,
    ["run", ...args],
    agentEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.httpEndpoint,
      OTEL_BSP_SCHEDULE_DELAY: "200",
      OTEL_METRICS_EXPORTER: "none",
      // A run may point the agent at BPF objects built elsewhere (agentEnv drops PROBESCOPE_* otherwise).
      ...(process.env["PROBESCOPE_BPF_DIR"] ? { PROBESCOPE_BPF_DIR: process.env["PROBESCOPE_BPF_DIR"] } : {}),
      ...extra
    })
  )

const READY = /^probescope: ready: (.*)$/m

describe("probescope run: selectors", { timeout: 300_000 }, () => {
  it.live("--port: the process listening on it in its own network namespace, found after it starts listening", () =>
    Effect.gen(function*() {
      const receiver = yield* Receiver.make()
      const port = yield* freePort
      const id = hex64()
      const cgroup = makeCgroup(`system.slice/docker-${id}.scope`)
      const agent = yield* agentWith(["--port", String(port)], receiver)
      const ready = yield* agent.line("stderr", READY, "120 seconds")
      assert.strictEqual(ready[1], `probes go_context, nethttp_server, nethttp_client, grpc, database_sql, go_redis, kafka_go, otel_trace, go_panic, openssl_http; watching port ${port}; ` +
        "0 process(es) attached")
      assert.include(
        agent.stderr(),
        `probescope: warning: --port ${port}: no process listens on port ${port}; watching for one\n`
      )

      const exe = backendAt(`port/backend`)
      const backend = yield* startInCgroup(exe, cgroup, port, true)
      assert.notStrictEqual(
        fs.readlinkSync(`/proc/${backend.pid}/ns/net`),
        fs.readlinkSync("/proc/self/ns/net"),
        "the backend has a network namespace of its own"
      )
      const lines = fs.readFileSync(`/proc/${backend.pid}/cgroup`, "utf8").trim().split("\n")
      assert.strictEqual(lines.at(-1), `0::${cgroup}`)
      yield* agent.line("stderr", attachedLine(backend.pid), "30 seconds")
      yield* Effect.sleep("300 millis")
      assert.strictEqual(yield* getIn(backend.pid, `http://127.0.0.1:${port}/users/7`, true), 200)
      const spans = yield* receiver.waitFor(1, "30 seconds")
      assert.strictEqual(spans.length, 1)
      const r = spans[0]!.resource
      assert.strictEqual(spans[0]!.name, "GET /users/{id}")
      assert.deepStrictEqual(
        { ...hostResource, "container.id": id, "process.pid": backend.pid },
        {
          "host.name": r["host.name"],
          "host.id": r["host.id"],
          "os.type": r["os.type"],
          "container.id": r["container.id"],
          "process.pid": r["process.pid"]
        }
      )
      assert.isUndefined(r["process.command_args"], "arguments are off by default")
      assert.isUndefined(r["k8s.pod.uid"])
    }))

  it.live("--exe GLOB: every process of a matching executable; a Kubernetes cgroup gives the pod; arguments on", () =>
    Effect.gen(function*() {
      const receiver = yield* Receiver.make()
      const port = yield* freePort
      const id = hex64()
      const pod = crypto.randomUUID()
      const cgroup = makeCgroup(
        `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${pod.replaceAll("-", "_")}.slice/` +
          `cri-containerd-${id}.scope`
      )
      const glob = `${work}/*/bin/api`
      const agent = yield* agentWith(["--exe", glob], receiver, { PROBESCOPE_RESOURCE_COMMAND_ARGS: "true" })
      const ready = yield* agent.line("stderr", READY, "120 seconds")
      assert.strictEqual(ready[1], `probes go_context, nethttp_server, nethttp_client, grpc, database_sql, go_redis, kafka_go, otel_trace, go_panic, openssl_http; watching ${glob}; ` +
        "0 process(es) attached")
      assert.include(
        agent.stderr(),
        `probescope: warning: --exe ${glob}: no running process matches; watching for one\n`
      )

      const exe = backendAt("users/bin/api")
      const backend = yield* startInCgroup(exe, cgroup, port, false)
      yield* agent.line("stderr", attachedLine(backend.pid), "30 seconds")
      yield* Effect.sleep("300 millis")
      assert.strictEqual(yield* get(`http://127.0.0.1:${port}/users/7`), 200)
      const spans = yield* receiver.waitFor(1, "30 seconds")
      const r = spans[0]!.resource
      assert.strictEqual(r["container.id"], id)
      assert.strictEqual(r["k8s.pod.uid"], pod)
      assert.strictEqual(r["host.name"], hostResource["host.name"])
      assert.strictEqual(r["host.id"], hostResource["host.id"])
      assert.strictEqual(r["os.type"], "linux")
      assert.deepStrictEqual(r["process.command_args"], [exe, "-addr", `127.0.0.1:${port}`])
      assert.strictEqual(r["service.name"], "api")
    }))

  it.live("--cgroup GLOB and --container PREFIX together: one process running at start, one started later", () =>
    Effect.gen(function*() {
      const receiver = yield* Receiver.make()
      const [portA, portB] = [yield* freePort, yield* freePort]
      const idA = hex64()
      const idB = hex64()
      const cgroupA = makeCgroup(`machine.slice/libpod-${idA}.scope`)
      const cgroupB = makeCgroup(`default/${idB}`)
      const early = yield* startInCgroup(backendAt("a/backend"), cgroupA, portA, false)
      const glob = `/${top}/machine.slice/*`
      const prefix = idB.slice(0, 12)
      const agent = yield* agentWith(["--cgroup", glob, "--container", prefix], receiver)
      const ready = yield* agent.line("stderr", READY, "120 seconds")
      assert.strictEqual(
        ready[1],
        `probes go_context, nethttp_server, nethttp_client, grpc, database_sql, go_redis, kafka_go, otel_trace, go_panic, openssl_http; watching container ${prefix}, cgroup ${glob}; ` +
          "1 process(es) attached"
      )
      assert.include(
        agent.stderr(),
        `probescope: warning: --container ${prefix}: no running process is in it; watching for one\n`
      )
      assert.notInclude(agent.stderr(), `warning: --cgroup`)
      const late = yield* startInCgroup(backendAt("b/backend"), cgroupB, portB, false)
      yield* agent.line("stderr", attachedLine(late.pid), "30 seconds")
      yield* Effect.sleep("300 millis")
      assert.strictEqual(yield* get(`http://127.0.0.1:${portA}/users/7`), 200)
      assert.strictEqual(yield* get(`http://127.0.0.1:${portB}/users/7`), 200)
      const spans = yield* receiver.waitFor(2, "30 seconds")
      const byPid = new Map(spans.map((s) => [s.resource["process.pid"], s.resource]))
      assert.strictEqual(byPid.get(early.pid)?.["container.id"], idA)
      assert.strictEqual(byPid.get(late.pid)?.["container.id"], idB)
      for (const r of byPid.values()) assert.strictEqual(r["host.id"], hostResource["host.id"])
    }))

  it.live("inspect --pid and list with selectors say what run would attach, and by which selector", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const id = hex64()
      const cgroup = makeCgroup(`system.slice/docker-${id}.scope`)
      const backend = yield* startInCgroup(backendAt("inspect/backend"), cgroup, port, false)
      const inspect = yield* runCli(["inspect", "--pid", String(backend.pid), "--port", String(port), "--json"])
      assert.strictEqual(inspect.code, 0, inspect.stderr)
      assert.deepStrictEqual(JSON.parse(inspect.stdout).selection, {
        selected: true,
        selectedBy: [`--port ${port}`],
        attach: true,
        reason: null
      })
      const none = yield* runCli(["inspect", "--pid", String(backend.pid), "--container", "abcdef"])
      assert.strictEqual(none.code, 0, none.stderr)
      assert.include(none.stdout, "\nselection: not selected: no selector matches it")
      const list = yield* runCli(["list", "--container", id.slice(0, 8), "--json"])
      assert.strictEqual(list.code, 0, list.stderr)
      assert.deepStrictEqual(JSON.parse(list.stdout).targets, [{
        pid: backend.pid,
        exe: fs.realpathSync(path.join(work, "inspect/backend")),
        selectedBy: [`--container ${id.slice(0, 8)}`],
        attach: true,
        reason: null
      }])
    }))

  it.live("bad selectors: one line each, exit 2; a pid that does not exist: exit 1", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string, number]> = [
        [["run", "--port", "70000"], "probescope: --port 70000: not a TCP port (expected 1 to 65535)", 2],
        [["run", "--port", "0"], "probescope: --port 0: not a TCP port (expected 1 to 65535)", 2],
        [
          ["run", "--exe", "srv/*/api"],
          "probescope: --exe srv/*/api: a glob must be an absolute path (e.g. /srv/*/bin/api)",
          2
        ],
        [
          ["run", "--container", "nginx"],
          "probescope: --container nginx: not a container id or a prefix of one (expected 1 to 64 lowercase hex " +
          "digits)",
          2
        ],
        [
          ["run", "--cgroup", "kubepods.slice"],
          "probescope: --cgroup kubepods.slice: not an absolute cgroup path (as /proc/PID/cgroup shows it, e.g. " +
          "/kubepods.slice/**)",
          2
        ],
        [
          ["list", "--port", "65536"],
          "probescope: --port 65536: not a TCP port (expected 1 to 65535)",
          2
        ],
        [
          ["run"],
          "probescope: run needs at least one --pid N, --exe PATH, --port N, --container ID, --cgroup PATH or " +
          "--all-go",
          2
        ],
        [["run", "--pid", "999999999"], "probescope: process 999999999 not found", 1]
      ]
      for (const [args, line, code] of cases) {
        const result = yield* runCli(args)
        assert.strictEqual(result.stderr, `${line}\n`, args.join(" "))
        assert.strictEqual(result.code, code, args.join(" "))
      }
      const config = path.join(work, "bad-port.yaml")
      fs.writeFileSync(config, "selection:\n  ports: [8080, 70000]\n")
      const bad = yield* runCli(["run", "--config", config])
      assert.strictEqual(
        bad.stderr,
        `probescope: config ${config}: selection.ports[1]: Expected a value between 1 and 65535\n`
      )
      assert.strictEqual(bad.code, 1)
    }))
})
