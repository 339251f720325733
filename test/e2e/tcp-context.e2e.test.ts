/**
 * tcp_context through the CLI into a real OpenTelemetry Collector (root): one trace across two "hosts" without
 * writing process memory. The hosts are two network namespaces on a veth pair, each with a cgroup of its own
 * (NetnsFixture), and each has its own agent (`probescope run --pid <its process>`, tcp_context attached to its
 * side's cgroup through the config file), so the two ends share no BPF map — as on two machines. The Go fixture's
 * client in the client namespace calls the server in the server namespace over HTTP/1 with no traceparent (the client
 * probe cannot write one). With tcp_context the server span is the child of the client span, in its trace; without
 * it (the control, same setup) each side is a trace of its own. And with one agent for both sides (one map, the
 * same-host path and the option both at work) it is still exactly one trace per request.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { beforeAll } from "vitest"
import * as Collector from "../collector/Collector.ts"
import { buildNetns } from "../fixtures/go/netns/build.ts"
import { makePair } from "../instrumentations/NetnsFixture.ts"
import type { ReceivedSpan } from "../receiver/Receiver.ts"
import { agentEnv, attachedLine, cli, root, spawnProc } from "./harness.ts"

/** The fixture per Go version. */
const fixtures: Record<string, string> = {}

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  for (const version of ["1.25.9", "1.26.8", "1.27.3"]) fixtures[version] = buildNetns(version)
}, 600_000)

const probe = (file: string) => ["--probe", path.join(root, "src/instrumentations", file)]

/**
 * An agent: the net/http probes (and tcp_context on `cgroup`) on the processes `pids` only — one side's process (one
 * agent per "host"), or both.
 */
const agentFor = (collector: Collector.Collector, cgroup: string, pids: ReadonlyArray<number>, tcpContext: boolean) =>
  Effect.gen(function*() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tcp-context-e2e-"))
    const config = path.join(dir, "probescope.json")
    fs.writeFileSync(config, JSON.stringify({ probes: { settings: { tcp_context: { cgroup } } } }))
    const agent = yield* spawnProc(
      cli,
      [
        "run",
        "--no-builtins",
        ...(tcpContext ? probe("TcpContext.ts") : []),
        ...probe("NetHttpServer.ts"),
        ...probe("NetHttpClient.ts"),
        ...pids.flatMap((pid) => ["--pid", String(pid)]),
        "--config",
        config
      ],
      agentEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
        OTEL_METRICS_EXPORTER: "none",
        OTEL_LOGS_EXPORTER: "none",
        OTEL_BSP_SCHEDULE_DELAY: "200"
      })
    )
    for (const pid of pids) {
      const attached = yield* agent.line("stderr", attachedLine(pid), "120 seconds")
      assert.deepStrictEqual(attached[2]!.split(", ").sort(), ["go_context", "nethttp_client", "nethttp_server"])
    }
    yield* agent.line("stderr", /^probescope: ready: (.*)$/m, "60 seconds")
    return agent
  })

/**
 * Two requests from the client namespace to the server namespace, on one keep-alive connection; their 4 spans. One
 * agent per side (`agents: 2`, the two-hosts case) or one for both (`agents: 1`: one map, as on one host).
 */
const twoRequests = (
  tcpContext: boolean,
  go: { readonly client: string; readonly server: string },
  agents: 1 | 2 = 2
) =>
  Effect.scoped(Effect.gen(function*() {
    const collector = yield* Collector.make()
    const pair = yield* makePair
    const run = (argv: ReadonlyArray<string>) => spawnProc(argv[0]!, argv.slice(1))
    const server = yield* run(pair.server.run([fixtures[go.server]!, "server", "-addr", `${pair.server.ip}:0`]))
    const addr = (yield* server.line("stdout", /^listening on (\S+)$/m, "30 seconds"))[1]!
    const client = yield* run(pair.client.run([fixtures[go.client]!, "client", "-url", `http://${addr}/hello`]))
    yield* client.line("stdout", /^ready$/m, "30 seconds")
    if (agents === 2) {
      yield* agentFor(collector, pair.server.cgroup, [server.pid], tcpContext)
      yield* agentFor(collector, pair.client.cgroup, [client.pid], tcpContext)
    } else {
      yield* agentFor(collector, pair.cgroup, [server.pid, client.pid], tcpContext)
    }
    // Each agent's program is on its own cgroup (and only there), or nowhere in the control.
    const shown = (cgroup: string) =>
      (JSON.parse(execFileSync("bpftool", ["-j", "cgroup", "show", cgroup], { encoding: "utf8" }).trim() || "[]") as
        ReadonlyArray<{ attach_type: string; name: string }>).map((a) => `${a.attach_type} ${a.name}`)
    const program = tcpContext ? ["cgroup_sock_ops tcp_context"] : []
    assert.deepStrictEqual(
      [shown(pair.cgroup), shown(pair.server.cgroup), shown(pair.client.cgroup)],
      agents === 2 ? [[], program, program] : [program, [], []]
    )
    for (const n of [1, 2]) {
      process.kill(client.pid, "SIGUSR1")
      yield* client.line("stdout", new RegExp(`^(status 200\\n){${n}}`, "m"), "30 seconds")
    }
    const spans = yield* collector.receiver.waitFor(4, "60 seconds")
    const byKind = (kind: string, pid: number) =>
      spans.filter((s) => s.kind === kind && s.resource["process.pid"] === pid)
        .sort((a, b) => a.startTimeUnixNano < b.startTimeUnixNano ? -1 : 1)
    return {
      spans,
      clients: byKind("SPAN_KIND_CLIENT", client.pid),
      servers: byKind("SPAN_KIND_SERVER", server.pid),
      addr
    }
  }))

const summary = (s: ReceivedSpan) => [s.name, s.kind, s.scope.name, s.attributes["http.response.status_code"]]

describe("tcp_context across two network namespaces into a real collector", () => {
  it.live.each([
    { client: "1.26.8", server: "1.26.8" },
    { client: "1.25.9", server: "1.27.3" }
  ])("with tcp_context (client Go $client, server Go $server): each server span is the child of its client span", (go) =>
    Effect.gen(function*() {
      const { spans, clients, servers } = yield* twoRequests(true, go)
      assert.strictEqual(spans.length, 4)
      assert.deepStrictEqual(clients.map(summary), [
        ["GET", "SPAN_KIND_CLIENT", "probescope/nethttp_client", 200],
        ["GET", "SPAN_KIND_CLIENT", "probescope/nethttp_client", 200]
      ])
      assert.deepStrictEqual(servers.map(summary), [
        ["GET /hello", "SPAN_KIND_SERVER", "probescope/nethttp_server", 200],
        ["GET /hello", "SPAN_KIND_SERVER", "probescope/nethttp_server", 200]
      ])
      for (const i of [0, 1]) {
        assert.strictEqual(clients[i]!.parentSpanId, "")
        assert.strictEqual(servers[i]!.traceId, clients[i]!.traceId)
        assert.strictEqual(servers[i]!.parentSpanId, clients[i]!.spanId)
      }
      // Two requests, two traces: the second did not inherit the first's context.
      assert.notStrictEqual(clients[0]!.traceId, clients[1]!.traceId)
    }), 300_000)

  it.live("one agent for both sides (one map, as on one host) with tcp_context: the same one trace per request", () =>
    Effect.gen(function*() {
      const { spans, clients, servers } = yield* twoRequests(true, { client: "1.26.8", server: "1.26.8" }, 1)
      assert.strictEqual(spans.length, 4)
      assert.strictEqual(clients.length, 2)
      assert.strictEqual(servers.length, 2)
      for (const i of [0, 1]) {
        assert.strictEqual(servers[i]!.traceId, clients[i]!.traceId)
        assert.strictEqual(servers[i]!.parentSpanId, clients[i]!.spanId)
      }
      assert.notStrictEqual(clients[0]!.traceId, clients[1]!.traceId)
    }), 300_000)

  it.live("control, without tcp_context: the same exchange gives separate traces", () =>
    Effect.gen(function*() {
      const { spans, clients, servers } = yield* twoRequests(false, { client: "1.26.8", server: "1.26.8" })
      assert.strictEqual(spans.length, 4)
      assert.strictEqual(clients.length, 2)
      assert.strictEqual(servers.length, 2)
      for (const i of [0, 1]) {
        assert.strictEqual(servers[i]!.parentSpanId, "")
        assert.notStrictEqual(servers[i]!.traceId, clients[i]!.traceId)
      }
    }), 300_000)
})
