/**
 * The TCP metrics probe on the real kernel (root): small Python programs (servers and clients, any language would
 * do) make a known number of TCP connections over loopback; the probe, attached through the Manager to some of
 * them, must report exactly those of the selected processes — each on its own pid — and nothing of the others.
 *
 * The programs (tcpPrograms.ts) run in a network namespace of the test's own. Retransmissions are made deterministic
 * without any traffic shaping (this kernel has no sch_netem, and neither nft nor iptables is installed):
 * - a SYN: a listener with backlog 0 that never accepts keeps one connection in its accept queue, so the kernel drops
 *   the SYN of a second connect, and a client with TCP_SYNCNT=1 retransmits that SYN exactly once (after 1 s; the
 *   namespace has plain exponential SYN backoff) before its connect times out (after 3 s, ETIMEDOUT);
 * - data: a cgroup_skb/ingress program (bpf/test/tcp_drop.bpf.c) on a cgroup holding the client drops the first data
 *   segment its sockets receive (the server's greeting), which the server then retransmits once.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as TcpMetrics from "../../src/instrumentations/TcpMetrics.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as TargetEvent from "../../src/manager/TargetEvent.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedMeasurements } from "../../src/probe/ProbeTest.ts"
import type { Measurement } from "../../src/probe/Telemetry.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import * as Probe from "../../src/probe/Probe.ts"
import { Bpf } from "../../src/kernel/Bpf.ts"
import { finish, makeCgroup, makeNetns, type Netns, type Program } from "./tcpPrograms.ts"

const root = path.resolve(import.meta.dirname, "../..")

let net: Netns | undefined

beforeAll(() => {
  execFileSync("make", ["-C", path.join(root, "bpf"), "out/tcp_metrics.bpf.o", "out/tcp_drop.bpf.o"], {
    stdio: "ignore"
  })
  net = makeNetns("tcp")
})

afterAll(() => net?.remove())

const start = (...args: ReadonlyArray<string>) => net!.start(...args)

const agent = ManagerM.layer.pipe(
  Layer.provide(TcpMetrics.TcpMetrics.layer),
  Layer.provideMerge(Layer.mergeAll(
    BpfLive.layer,
    ProbeTest.layerSink,
    ProbeTest.layerTargets,
    TracingConfig.layer(TracingConfig.defaultSampler)
  ))
)

/** Select a process: what the agent does for a process its selection matches (any language applies). */
const select = (p: Program) =>
  Effect.gen(function*() {
    const manager = yield* Manager
    yield* manager.handle(TargetEvent.TargetEvent.Started({
      target: ProbeTest.target({ pid: p.pid, language: "native", exe: "/usr/bin/python3" })
    }))
  })

/** Measurements summed by pid, instrument and attributes ("pid instrument {attrs}" -> sum; durations counted). */
const totals = (ms: ReadonlyArray<Measurement>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const m of ms) {
    const attrs = Object.entries(m.attributes).map(([k, v]) => `${k}=${String(v)}`).sort().join(",")
    const key = `${m.pid} ${m.instrument.name} ${attrs}`
    out[key] = (out[key] ?? 0) + (m.instrument.kind === "histogram" ? 1 : m.value)
  }
  return out
}

const attrs = (side: "client" | "server", port: number, error?: string, type = "ipv4") =>
  [
    "network.transport=tcp",
    `network.type=${type}`,
    `server.port=${port}`,
    `tcp.connection.side=${side}`,
    ...(error === undefined ? [] : [`error.type=${error}`])
  ].sort().join(",")

/**
 * Wait until `n` measurements have arrived (at most 10 s: the assertion on what came then shows what is missing),
 * then a little longer: nothing more may come.
 */
const collect = (n: number) =>
  Effect.gen(function*() {
    const captured = yield* CapturedMeasurements
    yield* captured.take(n).pipe(Effect.timeout("10 seconds"), Effect.ignore)
    yield* Effect.sleep("500 millis")
    return yield* captured.all
  })

describe("TCP metrics on the kernel", () => {
  it.live("connections opened and closed, with durations, for the selected client and server only", () =>
    Effect.gen(function*() {
      const server = yield* start("server", "128", "5")
      yield* select(server)
      yield* server.go
      const port = Number(yield* server.line)

      const client = yield* start("client", String(port), "3")
      const other = yield* start("client", String(port), "2")
      yield* select(client)
      yield* client.go
      const refused = Number(yield* client.line)
      assert.strictEqual(yield* client.line, "done")
      yield* other.go
      const otherRefused = Number(yield* other.line)
      assert.strictEqual(yield* other.line, "done")

      // client: 3 opened + 3 closed + 3 durations + 1 failed; server: 5 opened + 5 closed + 5 durations.
      const all = yield* collect(25)
      assert.deepStrictEqual(totals(all), {
        [`${client.pid} tcp.connection.opened ${attrs("client", port)}`]: 3,
        [`${client.pid} tcp.connection.closed ${attrs("client", port)}`]: 3,
        [`${client.pid} tcp.connection.duration ${attrs("client", port)}`]: 3,
        [`${client.pid} tcp.connection.failed ${attrs("client", refused, "econnrefused")}`]: 1,
        [`${server.pid} tcp.connection.opened ${attrs("server", port)}`]: 5,
        [`${server.pid} tcp.connection.closed ${attrs("server", port)}`]: 5,
        [`${server.pid} tcp.connection.duration ${attrs("server", port)}`]: 5
      })
      // The unselected client's connections are reported only as the selected server's side of them.
      assert.isFalse(all.some((m) => m.pid === other.pid || m.attributes["server.port"] === otherRefused))
      // Durations: seconds, each positive and well under the test's own length.
      for (const m of all.filter((m) => m.instrument.name === "tcp.connection.duration")) {
        assert.isTrue(m.value > 0 && m.value < 10, `duration ${m.value}`)
      }
      yield* Effect.forEach([server, client, other], finish)
    }).pipe(Effect.provide(agent), Effect.scoped), { timeout: 60_000 })

  it.live("a SYN dropped by a full accept queue: one retransmission, then the connect times out", () =>
    Effect.gen(function*() {
      // Not selected: a listener with room for one queued connection and no accept.
      const listener = yield* start("server", "0", "0")
      yield* listener.go
      const port = Number(yield* listener.line)

      const client = yield* start("syn", String(port))
      yield* select(client)
      yield* client.go
      assert.strictEqual(yield* client.line, "110") // ETIMEDOUT
      assert.strictEqual(yield* client.line, "done")

      // The queued connection: opened, closed (reset by the client: no socket error), its duration; the other
      // connect: its SYN retransmitted once, then failed.
      const all = yield* collect(5)
      assert.deepStrictEqual(totals(all), {
        [`${client.pid} tcp.connection.opened ${attrs("client", port)}`]: 1,
        [`${client.pid} tcp.connection.closed ${attrs("client", port)}`]: 1,
        [`${client.pid} tcp.connection.duration ${attrs("client", port)}`]: 1,
        [`${client.pid} tcp.retransmissions ${attrs("client", port)}`]: 1,
        [`${client.pid} tcp.connection.failed ${attrs("client", port, "etimedout")}`]: 1
      })
      assert.isFalse(all.some((m) => m.pid === listener.pid))
      yield* Effect.forEach([listener, client], finish)
    }).pipe(Effect.provide(agent), Effect.scoped), { timeout: 60_000 })

  it.live("connections reset before the selected server accepted them: on the listener's owner, with econnreset", () =>
    Effect.gen(function*() {
      // Selected before it listens: the listener's owner is known from listen(). It never accepts, so no process
      // ever touches these connections; the unselected client resets each one right after the handshake.
      const server = yield* start("server", "16", "0")
      yield* select(server)
      yield* server.go
      const port = Number(yield* server.line)
      const client = yield* start("reset", String(port), "2")
      yield* client.go
      assert.strictEqual(yield* client.line, "done")

      const all = yield* collect(6)
      assert.deepStrictEqual(totals(all), {
        [`${server.pid} tcp.connection.opened ${attrs("server", port)}`]: 2,
        [`${server.pid} tcp.connection.closed ${attrs("server", port, "econnreset")}`]: 2,
        [`${server.pid} tcp.connection.duration ${attrs("server", port, "econnreset")}`]: 2
      })
      yield* Effect.forEach([server, client], finish)
    }).pipe(Effect.provide(agent), Effect.scoped), { timeout: 60_000 })

  it.live("network.type is the wire's: IPv6, and IPv4 on a dual-stack (AF_INET6) listener", () =>
    Effect.gen(function*() {
      const server = yield* start("server", "16", "3", "dual")
      yield* select(server)
      yield* server.go
      const port = Number(yield* server.line)
      const v6 = yield* start("client", String(port), "2", "::1")
      const v4 = yield* start("client", String(port), "1", "127.0.0.1")
      yield* select(v6)
      const refused: Array<number> = []
      for (const c of [v6, v4]) {
        yield* c.go
        refused.push(Number(yield* c.line))
        assert.strictEqual(yield* c.line, "done")
      }
      // v6 (selected): 2 opened, 2 closed, 2 durations over IPv6, 1 refused (to 127.0.0.1: IPv4); the server: 3 of
      // each, one of them over IPv4 although its socket is AF_INET6 (a v4-mapped peer).
      const all = yield* collect(16)
      assert.deepStrictEqual(totals(all), {
        [`${v6.pid} tcp.connection.opened ${attrs("client", port, undefined, "ipv6")}`]: 2,
        [`${v6.pid} tcp.connection.closed ${attrs("client", port, undefined, "ipv6")}`]: 2,
        [`${v6.pid} tcp.connection.duration ${attrs("client", port, undefined, "ipv6")}`]: 2,
        [`${v6.pid} tcp.connection.failed ${attrs("client", refused[0]!, "econnrefused")}`]: 1,
        [`${server.pid} tcp.connection.opened ${attrs("server", port, undefined, "ipv6")}`]: 2,
        [`${server.pid} tcp.connection.closed ${attrs("server", port, undefined, "ipv6")}`]: 2,
        [`${server.pid} tcp.connection.duration ${attrs("server", port, undefined, "ipv6")}`]: 2,
        [`${server.pid} tcp.connection.opened ${attrs("server", port)}`]: 1,
        [`${server.pid} tcp.connection.closed ${attrs("server", port)}`]: 1,
        [`${server.pid} tcp.connection.duration ${attrs("server", port)}`]: 1
      })
      yield* Effect.forEach([server, v6, v4], finish)
    }).pipe(Effect.provide(agent), Effect.scoped), { timeout: 60_000 })

  it.live("a data segment lost on its way to the client: the server's retransmission, on the server", () =>
    Effect.gen(function*() {
      // The client's sockets lose the first data segment they receive: the server's greeting.
      const cgroup = makeCgroup("tcp-drop")
      yield* Effect.addFinalizer(() => Effect.sync(() => cgroup.remove()))
      const bpf = yield* Bpf
      const drop = yield* bpf.load({ file: Probe.objectFile("tcp_drop"), name: "tcp_drop" })
      yield* drop.attachCgroup({ program: "drop_data", cgroup: cgroup.path })

      const server = yield* start("greeter")
      yield* select(server)
      yield* server.go
      const port = Number(yield* server.line)
      const client = yield* start("greeted", String(port))
      cgroup.add(client.pid)
      yield* select(client)
      yield* client.go
      assert.strictEqual(yield* client.line, "done")

      const all = yield* collect(7)
      assert.deepStrictEqual(totals(all), {
        [`${server.pid} tcp.connection.opened ${attrs("server", port)}`]: 1,
        [`${server.pid} tcp.retransmissions ${attrs("server", port)}`]: 1,
        [`${server.pid} tcp.connection.closed ${attrs("server", port)}`]: 1,
        [`${server.pid} tcp.connection.duration ${attrs("server", port)}`]: 1,
        [`${client.pid} tcp.connection.opened ${attrs("client", port)}`]: 1,
        [`${client.pid} tcp.connection.closed ${attrs("client", port)}`]: 1,
        [`${client.pid} tcp.connection.duration ${attrs("client", port)}`]: 1
      })
      const lost = yield* drop.lookup("dropped", new Uint8Array(4))
      assert.deepStrictEqual(lost._tag === "Some" ? [...lost.value] : [], [1, 0, 0, 0])
      yield* Effect.forEach([server, client], finish)
    }).pipe(Effect.provide(agent), Effect.scoped), { timeout: 60_000 })
})
