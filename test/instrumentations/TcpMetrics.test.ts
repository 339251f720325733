/**
 * The TCP metrics probe without a kernel: its layouts against the built object's BTF, each kind of record turned
 * into exact measurements, its declared instruments against what it records, and its attach on the fake kernel
 * (tracepoints once, the per-pid entry per selected process).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Scope } from "effect"
import * as TcpMetrics from "../../src/instrumentations/TcpMetrics.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import type { Measurement } from "../../src/probe/Telemetry.ts"

const { instruments, Kind, Side } = TcpMetrics
const probe = TcpMetrics.TcpMetrics

/** A record as the BPF side writes it; fields default to a client IPv4 connection of pid 4242 to port 5432. */
const record = (fields: Partial<TcpMetrics.Record>): Uint8Array =>
  TcpMetrics.Record.encode({
    durationNs: 0,
    pid: 4242,
    segments: 0,
    serverPort: 5432,
    error: 0,
    kind: Kind.opened,
    side: Side.client,
    ipVersion: 4,
    ...fields
  })

const measurementsOf = (fields: Partial<TcpMetrics.Record>) =>
  Effect.map(probe.signals(record(fields)), (s) => {
    assert.deepStrictEqual([s.spans.length, s.logs.length], [0, 0])
    return s.measurements
  })

const client4 = {
  "network.transport": "tcp",
  "network.type": "ipv4",
  "tcp.connection.side": "client",
  "server.port": 5432
}

const realBtf = BpfLive.readBtf(Probe.objectFile("tcp_metrics")).pipe(Effect.map(Option.getOrThrow), Effect.orDie)

describe("layouts", () => {
  it.effect("the record and the per-target value match the C structs of tcp_metrics.bpf.o's BTF", () =>
    Effect.gen(function*() {
      const btf = yield* realBtf
      for (const layout of [TcpMetrics.Record, TcpMetrics.Target]) {
        const struct = btf.structs[layout.struct!]!
        assert.deepStrictEqual(Binary.check(layout, struct), [], layout.struct)
        assert.strictEqual(layout.size, struct.size)
      }
      assert.strictEqual(TcpMetrics.Record.size, 24)
      assert.strictEqual(btf.mapValues["ps_targets"], "tcp_metrics_target")
    }))
})

describe("TcpMetrics.signals", () => {
  it.effect("opened: one connection on the owner's resource, with the connection's attributes", () =>
    Effect.gen(function*() {
      const ms = yield* measurementsOf({ kind: Kind.opened })
      assert.deepStrictEqual(ms, [
        { pid: 4242, probe: "tcp_metrics", instrument: instruments.opened, value: 1, attributes: client4 }
      ])
    }))

  it.effect("closed: the count and the duration in seconds, with error.type when the socket ended in error", () =>
    Effect.gen(function*() {
      const clean = yield* measurementsOf({ kind: Kind.closed, durationNs: 1_500_000_000 })
      assert.deepStrictEqual(clean, [
        { pid: 4242, probe: "tcp_metrics", instrument: instruments.closed, value: 1, attributes: client4 },
        { pid: 4242, probe: "tcp_metrics", instrument: instruments.duration, value: 1.5, attributes: client4 }
      ])
      const reset = yield* measurementsOf({
        kind: Kind.closed,
        durationNs: 2_000_000,
        error: 104,
        side: Side.server,
        serverPort: 8080,
        ipVersion: 6,
        pid: 7
      })
      const attributes = {
        "network.transport": "tcp",
        "network.type": "ipv6",
        "tcp.connection.side": "server",
        "server.port": 8080,
        "error.type": "econnreset"
      }
      assert.deepStrictEqual(reset, [
        { pid: 7, probe: "tcp_metrics", instrument: instruments.closed, value: 1, attributes },
        { pid: 7, probe: "tcp_metrics", instrument: instruments.duration, value: 0.002, attributes }
      ])
    }))

  it.effect("failed: error.type names the errno; a connect abandoned without a socket error is _OTHER", () =>
    Effect.gen(function*() {
      const refused = yield* measurementsOf({ kind: Kind.failed, error: 111 })
      assert.deepStrictEqual(refused, [{
        pid: 4242,
        probe: "tcp_metrics",
        instrument: instruments.failed,
        value: 1,
        attributes: { ...client4, "error.type": "econnrefused" }
      }])
      const timedOut = yield* measurementsOf({ kind: Kind.failed, error: 110 })
      assert.strictEqual(timedOut[0]!.attributes["error.type"], "etimedout")
      const abandoned = yield* measurementsOf({ kind: Kind.failed, error: 0 })
      assert.deepStrictEqual(abandoned[0]!.attributes, { ...client4, "error.type": "_OTHER" })
      const unlisted = yield* measurementsOf({ kind: Kind.failed, error: 99 })
      assert.strictEqual(unlisted[0]!.attributes["error.type"], "errno_99")
    }))

  it.effect("retransmit: the number of segments, without error.type", () =>
    Effect.gen(function*() {
      const ms = yield* measurementsOf({ kind: Kind.retransmit, segments: 3, error: 0 })
      assert.deepStrictEqual(ms, [
        { pid: 4242, probe: "tcp_metrics", instrument: instruments.retransmissions, value: 3, attributes: client4 }
      ])
    }))

  it.effect("an unknown kind records nothing; a short record is a SchemaError", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* measurementsOf({ kind: 9 }), [])
      const error = yield* Effect.flip(probe.signals(record({}).subarray(0, 20)))
      assert.strictEqual(error._tag, "SchemaError")
    }))

  it.effect("declares exactly the instruments it records into, with their names, kinds and units", () =>
    Effect.gen(function*() {
      assert.strictEqual(probe.instruments, instruments)
      const recorded: Array<Measurement> = []
      for (const kind of Object.values(Kind)) {
        recorded.push(...(yield* measurementsOf({ kind, durationNs: 1, segments: 1, error: 104 })))
      }
      const used = new Set(recorded.map((m) => m.instrument))
      assert.deepStrictEqual([...used].map((i) => i.name).sort(), Object.values(instruments).map((i) => i.name).sort())
      assert.deepStrictEqual(
        Object.values(instruments).map((i) => [i.name, i.kind, i.unit]),
        [
          ["tcp.connection.opened", "counter", "{connection}"],
          ["tcp.connection.failed", "counter", "{connection}"],
          ["tcp.connection.closed", "counter", "{connection}"],
          ["tcp.connection.duration", "histogram", "s"],
          ["tcp.retransmissions", "counter", "{segment}"]
        ]
      )
      assert.deepStrictEqual(instruments.duration.boundaries, TcpMetrics.DURATION_BOUNDARIES)
    }))
})

describe("on the fake kernel", () => {
  const withBtf = Layer.effectDiscard(Effect.gen(function*() {
    const kernel = yield* FakeKernel
    yield* kernel.defineBtf("tcp_metrics", yield* realBtf)
  }))

  it.effect("loads without sampler constants, checks both layouts, and attaches to a native process", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const loaded = yield* probe.tag
      assert.deepStrictEqual((yield* loaded.loader.load).layouts, [
        { role: "record", struct: "tcp_metrics_record", checked: true },
        { role: "perTarget", struct: "tcp_metrics_target", checked: true }
      ])
      const loads = (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [e] : [])
      assert.deepStrictEqual(loads.map((l) => [l.object, l.constants]), [["tcp_metrics", {}]])

      const native = ProbeTest.target({ pid: 300, language: "native", exe: "/usr/bin/python3" })
      assert.strictEqual(loaded.attacher.applicability(native)._tag, "Applies")
      const scope = yield* Scope.make()
      yield* loaded.attacher.attach(native).pipe(Scope.provide(scope))
      const entries = yield* kernel.map("tcp_metrics", "ps_targets")
      assert.deepStrictEqual([...entries].map(([k, v]) => [k, [...v]]), [["2c010000", [1]]])
      const tracepoints = (yield* kernel.events).flatMap((e) =>
        e._tag === "Attach" && e.kind === "tracepoint" ? [`${e.program} ${e.tracepoint}`] : []
      )
      assert.deepStrictEqual(tracepoints.sort(), [
        "tcp_recv sock/sock_recv_length",
        "tcp_retransmit tcp/tcp_retransmit_skb",
        "tcp_send sock/sock_send_length",
        "tcp_set_state sock/inet_sock_set_state"
      ])
      yield* Scope.close(scope, Effect.void as never)
      assert.strictEqual((yield* kernel.map("tcp_metrics", "ps_targets")).size, 0)
    }).pipe(
      Effect.provide(probe.layer.pipe(Layer.provide(withBtf), Layer.provideMerge(ProbeTest.layer))),
      Effect.scoped
    ))
})
