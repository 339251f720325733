/**
 * TCP connection metrics for any process: connections opened, failed and closed, how long they were established,
 * and the segments retransmitted on them — from kernel tracepoints only, so for programs in any language.
 *
 * BPF side: bpf/tcp_metrics.bpf.c. `inet_sock_set_state` follows each connection's life (SYN_SENT when a process
 * connects, ESTABLISHED, CLOSE), `tcp_retransmit_skb` its retransmissions, and `sock_recv_length`/`sock_send_length`
 * show which process uses an accepted connection. The kernel runs most of these in softirq context, where the
 * current task is not the socket's owner, so the BPF side learns the owner where the context is the process's own
 * (connect, the first recv/send, close) and keeps it per socket. One record per event reaches this file.
 *
 * The metrics (no stable OpenTelemetry semantic convention covers TCP connections; see docs/probes/tcp-metrics.md
 * for the names, and what cannot be attributed to a process):
 *
 * | instrument                | kind      | unit           | recorded                                              |
 * | ------------------------- | --------- | -------------- | ----------------------------------------------------- |
 * | `tcp.connection.opened`   | counter   | `{connection}` | a handshake completed (ESTABLISHED)                   |
 * | `tcp.connection.failed`   | counter   | `{connection}` | a connect ended before ESTABLISHED                    |
 * | `tcp.connection.closed`   | counter   | `{connection}` | an established connection reached CLOSE               |
 * | `tcp.connection.duration` | histogram | `s`            | ESTABLISHED to CLOSE, for each closed connection      |
 * | `tcp.retransmissions`     | counter   | `{segment}`    | segments retransmitted (SYNs of a connect included)   |
 *
 * Attributes, all of bounded cardinality: `network.transport` ("tcp"), `network.type` ("ipv4"/"ipv6", as on the
 * wire), `tcp.connection.side` ("client": this process connected; "server": it accepted), `server.port` (the
 * server's port either way), and `error.type` on failed and closed connections that ended with a socket error.
 * Peer addresses and client ports are left out: they grow with every peer.
 *
 * Reading order: manifest -> per-target value -> record -> instruments -> signals -> the probe.
 */
import {
  ATTR_ERROR_TYPE,
  ATTR_NETWORK_TRANSPORT,
  ATTR_NETWORK_TYPE,
  ATTR_SERVER_PORT
} from "@opentelemetry/semantic-conventions"
import * as Binary from "../probe/Binary.ts"
import * as Instruments from "../probe/Instruments.ts"
import type { Manifest } from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"
import type { AttributeValue } from "../probe/Telemetry.ts"

// ---------------------------------------------------------------------------------------------------------------
// Manifest: tracepoints, for every selected process whatever its language
// ---------------------------------------------------------------------------------------------------------------

/** The BPF programs and the tracepoints they go on; attached while at least one process is selected. */
export const manifest: Manifest = {
  processes: "any",
  tracepoints: [
    { program: "tcp_set_state", category: "sock", name: "inet_sock_set_state" },
    { program: "tcp_retransmit", category: "tcp", name: "tcp_retransmit_skb" },
    { program: "tcp_recv", category: "sock", name: "sock_recv_length" },
    { program: "tcp_send", category: "sock", name: "sock_send_length" }
  ]
}

// ---------------------------------------------------------------------------------------------------------------
// Per-target value: `struct tcp_metrics_target` in ps_targets[pid]; its presence is what selects a process
// ---------------------------------------------------------------------------------------------------------------

/** Layout of `struct tcp_metrics_target`. */
export const Target = Binary.struct({ selected: Binary.u8 }, { struct: "tcp_metrics_target" })

// ---------------------------------------------------------------------------------------------------------------
// Record: `struct tcp_metrics_record` (checked against the object's BTF at load)
// ---------------------------------------------------------------------------------------------------------------

/** What a record is about (`enum tcp_metrics_kind`). */
export const Kind = { opened: 1, closed: 2, failed: 3, retransmit: 4 } as const

/** Which end of the connection the owning process is (`enum tcp_metrics_side`). */
export const Side = { client: 1, server: 2 } as const

/** Layout of `struct tcp_metrics_record`. */
export const Record = Binary.struct({
  /** CLOSED: nanoseconds from ESTABLISHED to CLOSE. */
  durationNs: Binary.u64n,
  pid: Binary.u32,
  /** RETRANSMIT: how many segments. */
  segments: Binary.u32,
  serverPort: Binary.u16,
  /** The socket's errno at CLOSE, 0 for none. */
  error: Binary.u16,
  kind: Binary.u8,
  side: Binary.u8,
  ipVersion: Binary.u8,
  _pad: Binary.pad(1)
}, { struct: "tcp_metrics_record" })

/** A decoded record. */
export type Record = ReturnType<typeof Record.decode>

// ---------------------------------------------------------------------------------------------------------------
// Instruments
// ---------------------------------------------------------------------------------------------------------------

/**
 * Connection durations span milliseconds (a request per connection) to hours (pools, streams): buckets from 1 ms
 * to 1 h, roughly 1-2.5-5 per decade.
 */
export const DURATION_BOUNDARIES: ReadonlyArray<number> = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600
]

/** The instruments this probe records into, by the key `signals` uses. */
export const instruments = {
  opened: Instruments.counter("tcp.connection.opened", {
    unit: "{connection}",
    description: "TCP connections whose handshake completed, by the side this process is on"
  }),
  failed: Instruments.counter("tcp.connection.failed", {
    unit: "{connection}",
    description: "TCP connects that ended before the handshake completed (refused, timed out, reset, abandoned)"
  }),
  closed: Instruments.counter("tcp.connection.closed", {
    unit: "{connection}",
    description: "Established TCP connections that closed"
  }),
  duration: Instruments.histogram("tcp.connection.duration", {
    unit: "s",
    description: "How long each closed TCP connection was established",
    boundaries: DURATION_BOUNDARIES
  }),
  retransmissions: Instruments.counter("tcp.retransmissions", {
    unit: "{segment}",
    description: "TCP segments retransmitted, handshake included"
  })
} as const

/** The attribute naming the side of the connection the process is on (no semantic convention has one). */
export const ATTR_TCP_CONNECTION_SIDE = "tcp.connection.side"

/** errno values a TCP socket ends with, by the lower-case name `error.type` reports (as semconv's examples do). */
const ERRNO_NAMES: Readonly<globalThis.Record<number, string>> = {
  32: "epipe",
  71: "eproto",
  100: "enetdown",
  101: "enetunreach",
  103: "econnaborted",
  104: "econnreset",
  110: "etimedout",
  111: "econnrefused",
  112: "ehostdown",
  113: "ehostunreach"
}

/** `error.type` of a socket errno: its name, or "errno_<n>" for one not listed (still a bounded set). */
export const errorType = (errno: number): string => ERRNO_NAMES[errno] ?? `errno_${errno}`

// ---------------------------------------------------------------------------------------------------------------
// Signals: one record -> measurements on the owning process's resource
// ---------------------------------------------------------------------------------------------------------------

/** The attributes every measurement of one record carries. */
export const attributesOf = (r: Record): globalThis.Record<string, AttributeValue> => ({
  [ATTR_NETWORK_TRANSPORT]: "tcp",
  [ATTR_NETWORK_TYPE]: r.ipVersion === 6 ? "ipv6" : "ipv4",
  [ATTR_TCP_CONNECTION_SIDE]: r.side === Side.client ? "client" : "server",
  [ATTR_SERVER_PORT]: r.serverPort
})

/**
 * Turn one record into its measurements, on the owning process's resource. The BPF side only sends records of
 * connections whose owner is a selected process, so there is never a host-wide (pid-less) measurement.
 */
export const signals = (r: Record, emit: Probe.Emit<keyof typeof instruments>): void => {
  const pid = r.pid
  const attributes = attributesOf(r)
  const withError = r.error === 0 ? attributes : { ...attributes, [ATTR_ERROR_TYPE]: errorType(r.error) }
  switch (r.kind) {
    case Kind.opened:
      return emit.metric("opened", 1, attributes, pid)
    case Kind.failed:
      // A connect abandoned by the process (closed while still connecting) has no socket error.
      return emit.metric("failed", 1, r.error === 0 ? { ...attributes, [ATTR_ERROR_TYPE]: "_OTHER" } : withError, pid)
    case Kind.closed:
      emit.metric("closed", 1, withError, pid)
      return emit.metric("duration", r.durationNs / 1e9, withError, pid)
    case Kind.retransmit:
      return emit.metric("retransmissions", r.segments, attributes, pid)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The probe
// ---------------------------------------------------------------------------------------------------------------

/** The TCP metrics instrument probe. */
export const TcpMetrics = Probe.instrument({
  name: "tcp_metrics",
  object: "tcp_metrics",
  manifest,
  // Metrics, not traces: the sampler does not apply.
  sampling: "none",
  perTarget: { layout: Target, value: () => ({ selected: 1 }) },
  record: Binary.schema(Record),
  instruments,
  signals
})
