/**
 * The OpenSSL HTTP probe through the agent, as a user runs it (root): `probescope run --exe <python3> --exe
 * /usr/bin/curl` (openssl_http is a built-in) exporting OTLP to the real OpenTelemetry
 * Collector (test/collector), which forwards to the test receiver. A Python HTTPS server (test/fixtures/tls) runs
 * before the agent; curl starts after it (discovered at exec), makes two requests over one keep-alive connection, and
 * the exact CLIENT and SERVER spans arrive with each process's resource.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as Collector from "../collector/Collector.ts"
import type { ReceivedSpan } from "../receiver/Receiver.ts"
import { agentEnv, attachedLine, cli, root, spawnProc } from "./harness.ts"

const server = path.join(root, "test/fixtures/tls/https_server.py")
// The executable itself (/usr/bin/python3 is a symlink): what --exe selects and /proc/PID/exe names.
const python = fs.realpathSync("/usr/bin/python3")
const curl = fs.realpathSync("/usr/bin/curl")
let dir = ""

beforeAll(() => {
  execFileSync("make", ["-C", path.join(root, "bpf"), "out/openssl_http.bpf.o"], { stdio: "ignore" })
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-openssl-e2e-"))
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1",
    "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")
  ], { stdio: "ignore" })
  return Effect.runPromise(Collector.build)
}, 45 * 60_000)

afterAll(() => {
  if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
})

const one = (spans: ReadonlyArray<ReceivedSpan>, pred: (s: ReceivedSpan) => boolean, what: string) => {
  const found = spans.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} spans`)
  return found[0]!
}

describe("probescope run --exe python --exe curl (openssl_http is built in)", () => {
  it.live("curl's CLIENT and python's SERVER spans reach the collector", () =>
    Effect.gen(function*() {
      const srv = yield* spawnProc(python, [server, path.join(dir, "cert.pem"), path.join(dir, "key.pem")])
      const port = Number((yield* srv.line("stdout", /^READY (\d+)$/m, "30 seconds"))[1])
      const collector = yield* Collector.make()
      const agent = yield* spawnProc(
        cli,
        ["run", "--exe", python, "--exe", curl],
        agentEnv({
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
          OTEL_METRICS_EXPORTER: "none",
          OTEL_LOGS_EXPORTER: "none",
          OTEL_BSP_SCHEDULE_DELAY: "200"
        })
      )
      yield* agent.line("stderr", /^probescope: ready: (.*)$/m, "120 seconds")
      assert.match(attachedLine(srv.pid).exec(agent.stderr())?.[2] ?? agent.stderr(), /\bopenssl_http\b/)

      // curl reads its configuration from stdin: it waits, libssl mapped, until the agent has attached to it.
      const child = spawn(curl, ["-K", "-"], { stdio: ["pipe", "ignore", "inherit"] })
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve))
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
      const attached = yield* agent.line("stderr", attachedLine(child.pid!), "30 seconds")
      assert.match(attached[2]!, /\bopenssl_http\b/)
      const base = `https://127.0.0.1:${port}`
      child.stdin!.end(
        `insecure\nsilent\nurl = "${base}/items?id=7"\noutput = "/dev/null"\nurl = "${base}/fail"\noutput = "/dev/null"\n`
      )
      assert.strictEqual(yield* Effect.promise(() => exited), 0)

      const spans = yield* collector.receiver.waitFor(4, "30 seconds")
      const ua = execFileSync(curl, ["--version"]).toString().split(" ").slice(0, 2).join("/")
      const pidOf = (s: ReceivedSpan) => s.resource["process.pid"]
      const check = (s: ReceivedSpan, pid: number, kind: string, attributes: Record<string, unknown>, error: boolean) =>
        assert.deepStrictEqual(
          [pidOf(s), s.scope.name, s.kind, s.name, s.attributes, s.status, s.flags & 0xff],
          [pid, "probescope/openssl_http", kind, "GET", attributes,
            error ? { code: "STATUS_CODE_ERROR", message: "HTTP 500" } : { code: "STATUS_CODE_UNSET", message: "" }, 1]
        )
      const clientOf = (url: string) => one(spans, (s) => s.attributes["url.full"] === `${base}${url}`, url)
      const serverOf = (p: string) => one(spans, (s) => s.attributes["url.path"] === p, p)
      const common = { "http.request.method": "GET", "server.address": "127.0.0.1", "server.port": port }
      check(clientOf("/items?id=7"), child.pid!, "SPAN_KIND_CLIENT", {
        ...common,
        "url.full": `${base}/items?id=7`,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1"
      }, false)
      check(clientOf("/fail"), child.pid!, "SPAN_KIND_CLIENT", {
        ...common,
        "url.full": `${base}/fail`,
        "http.response.status_code": 500,
        "network.protocol.version": "1.1",
        "error.type": "500"
      }, true)
      check(serverOf("/items"), srv.pid, "SPAN_KIND_SERVER", {
        ...common,
        "url.path": "/items",
        "url.query": "id=7",
        "url.scheme": "https",
        "user_agent.original": ua,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1"
      }, false)
      check(serverOf("/fail"), srv.pid, "SPAN_KIND_SERVER", {
        ...common,
        "url.path": "/fail",
        "url.scheme": "https",
        "user_agent.original": ua,
        "http.response.status_code": 500,
        "network.protocol.version": "1.1",
        "error.type": "500"
      }, true)
      assert.strictEqual(spans.length, 4)

      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
    }).pipe(Effect.scoped), 180_000)
})
