/**
 * The container image's command, run on this machine: the Containerfile's ENTRYPOINT (this checkout's CLI for the
 * image's /usr/local/bin/probescope), the kubernetes ConfigMap's config file, the DaemonSet's environment (its
 * downward-API fields filled in, its collector port pointed at the tests' receiver) and exactly the DaemonSet's
 * capabilities: root's uid with a bounding set of those four and no_new_privs, as a container runtime makes it.
 * The agent must attach to a Go service started first, say it is ready, export its request's span, and exit 0 on
 * SIGINT. The systemd unit's way (another uid, the same capabilities as ambient ones) is run the same way.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Schedule } from "effect"
import { afterAll, beforeAll } from "vitest"
import { buildExample } from "../instrumentations/fixtures.ts"
import * as Receiver from "../receiver/Receiver.ts"
import { agentEnv, attachedLine, cli, get, spawnProc, startService } from "../e2e/harness.ts"
import { agent, entrypoint, unitSection } from "./deploy.ts"

/** A Go release the built-in probes support. */
const GO = "1.26.8"
const CONFIG_PATH = "/etc/probescope/config.yaml"
/** Bits of CapEff (linux/capability.h). */
const CAP_BITS: Record<string, bigint> = { DAC_READ_SEARCH: 2n, SYS_PTRACE: 19n, PERFMON: 38n, BPF: 39n }
/** The uid systemd's DynamicUser stands for here: any uid that is not root and owns nothing. */
const NOBODY = 65534

let service = ""
let dir = ""

beforeAll(() => {
  execFileSync("make", ["-C", path.join(path.dirname(cli), "..", "bpf")], { stdio: "ignore" })
  service = path.join(buildExample(GO), "backend")
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-deploy-e2e-"))
  // Readable by the unit's non-root user too.
  fs.chmodSync(dir, 0o755)
}, 900_000)

afterAll(() => {
  if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
})

/** The image's command line with this checkout's CLI and the config file at `config`. */
const commandLine = (config: string) => {
  const argv = entrypoint()
  assert.strictEqual(argv.filter((a) => a === CONFIG_PATH).length, 1, "the entrypoint reads the mounted config")
  return argv.slice(1).map((a) => (a === CONFIG_PATH ? config : a))
}

/** An OTLP endpoint for the collector's port (4317), pointed at the receiver's gRPC port on loopback. */
const toReceiver = (endpoint: string, receiver: Receiver.Receiver) => {
  const url = new URL(endpoint)
  assert.strictEqual(url.port, "4317", endpoint)
  return `http://127.0.0.1:${receiver.grpcPort}`
}

/** CapEff of a running process. */
const capEff = (pid: number) =>
  BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]}`)

/**
 * Starts the Go service, then the agent as `setpriv` makes it, and checks: ready after the service is attached, the
 * capabilities it holds, a request's span at the receiver, exit 0 on SIGINT within the stop bound.
 */
const runAgent = (options: {
  readonly setpriv: ReadonlyArray<string>
  readonly env: Record<string, string>
  readonly config: string
  readonly capabilities: ReadonlyArray<string>
  readonly uid: number
}) =>
  Effect.gen(function*() {
    // bin/probescope rebuilds dist/ when src/ is newer, which others edit while this runs: built now, as full root,
    // so the run as another uid does not try to write it.
    execFileSync(cli, ["--help"], { stdio: "ignore" })
    const backend = yield* startService(service, [])
    const receiver = yield* Receiver.make()
    const env = { ...options.env }
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = toReceiver(env["OTEL_EXPORTER_OTLP_ENDPOINT"]!, receiver)
    const argv = [...options.setpriv, "--", cli, ...commandLine(options.config)]
    const proc = yield* spawnProc("setpriv", argv, agentEnv(env))

    const ready = yield* proc.line("stderr", /^probescope: ready: (.*)$/m, "120 seconds")
    // allGo: every supported Go process of this machine, the service among them, attached before `ready`.
    const watching =
      /^probes go_context, nethttp_server, nethttp_client, grpc, database_sql, go_redis, kafka_go, otel_trace, go_panic, openssl_http; watching every Go process; \d+ process/
    assert.match(ready[1]!, watching)
    const attached = attachedLine(backend.pid).exec(proc.stderr())
    assert.isNotNull(attached, `no attach line for the service (pid ${backend.pid}):\n${proc.stderr()}`)
    assert.isBelow(attached!.index, ready.index)

    // setpriv exec'd the CLI, which exec'd Node: the pid is the agent's, holding exactly the intended set.
    const status = fs.readFileSync(`/proc/${proc.pid}/status`, "utf8")
    assert.match(status, new RegExp(`^Uid:\\s+${options.uid}\\s`, "m"))
    assert.match(status, /^NoNewPrivs:\s+1$/m)
    const expected = options.capabilities.reduce((mask, c) => mask | (1n << CAP_BITS[c]!), 0n)
    assert.strictEqual(capEff(proc.pid).toString(16), expected.toString(16))

    assert.strictEqual(yield* get(`http://${backend.addr}/users/7`), 200)
    const span = yield* receiver.spans.pipe(
      Effect.map((spans) => spans.find((s) => s.resource["process.pid"] === backend.pid)),
      Effect.repeat({ until: (s) => s !== undefined, schedule: Schedule.spaced("100 millis") }),
      Effect.timeout("30 seconds")
    )
    assert.strictEqual(span!.name, "GET /users/{id}")
    assert.strictEqual(span!.protocol, "grpc")

    proc.child.kill("SIGINT")
    const exit = yield* proc.exit("15 seconds")
    // 3 would mean telemetry was lost (the summary's last lines say where); 4 that the stop overran its bound.
    assert.deepStrictEqual(exit, { code: 0, signal: null }, `exit ${exit.code ?? exit.signal}:\n${proc.stderr()}`)
  }).pipe(Effect.scoped)

describe("deploy/ on this machine", () => {
  it.live("the image's entrypoint, with the DaemonSet's config, environment and capabilities", () =>
    Effect.gen(function*() {
      const { configText, container } = agent()
      const config = path.join(dir, "config.yaml")
      fs.writeFileSync(config, configText)
      const env: Record<string, string> = {}
      for (const v of container.env!) {
        const field = v.valueFrom?.fieldRef?.fieldPath
        const value = field === "status.hostIP" ? "127.0.0.1" : field === "spec.nodeName" ? os.hostname() : v.value!
        env[v.name] = value.replace(/\$\(([A-Za-z_]\w*)\)/g, (m, name: string) => env[name] ?? m)
      }
      const capabilities = container.securityContext!.capabilities!.add!
      const caps = capabilities.map((c) => `+${c.toLowerCase()}`).join(",")
      yield* runAgent({
        // Root, as in the pod (runAsUser 0), with only the added capabilities and allowPrivilegeEscalation false.
        setpriv: ["--bounding-set", `-all,${caps}`, "--inh-caps", "-all", "--no-new-privs"],
        env,
        config,
        capabilities,
        uid: 0
      })
    }))

  it.live("the systemd unit's command line, user and capabilities", () =>
    Effect.gen(function*() {
      const unit = unitSection("systemd/probescope.service", "Service")
      assert.deepStrictEqual(unit.get("DynamicUser"), ["yes"])
      const ambient = unit.get("AmbientCapabilities")![0]!.split(/\s+/).map((c) => c.replace(/^CAP_/, ""))
      const caps = ambient.map((c) => `+${c.toLowerCase()}`).join(",")
      const config = path.join(dir, "host-config.yaml")
      // The unit reads the same file as the pods (docs/deploy.md).
      fs.writeFileSync(config, agent().configText, { mode: 0o644 })
      const env = Object.fromEntries(unit.get("Environment")!.map((e) => e.split(/=(.*)/s).slice(0, 2)))
      const exec = unit.get("ExecStart")![0]!.split(/\s+/)
      assert.deepStrictEqual(exec.slice(1), [...entrypoint().slice(1)])
      yield* runAgent({
        setpriv: [
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          "--clear-groups",
          "--inh-caps",
          `-all,${caps}`,
          "--ambient-caps",
          caps,
          "--bounding-set",
          `-all,${caps}`,
          "--no-new-privs"
        ],
        env,
        config,
        capabilities: ambient,
        uid: NOBODY
      })
    }))
})
