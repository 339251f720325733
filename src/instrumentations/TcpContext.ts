/**
 * tcp_context: trace context across hosts without writing process memory. A daemon probe (it emits nothing) whose one
 * sock_ops program (bpf/tcp_context.bpf.c) is attached once, at load, to a cgroup v2 directory: every TCP connection
 * of a process in that cgroup or below then carries the span a client probe published for it (go_context's
 * `ps_conn_spans`) as a TCP header option on the request's data segments, and the receiving end writes what it
 * reads back into its own `ps_conn_spans`, under the key its server probe already looks up. So an HTTP/1 server span
 * on one host gets the client span of another host as its parent, with both probes unchanged.
 *
 * Both ends need an agent running this probe (the receiver must parse the option), and the option must survive the
 * path (see docs/tcp-context.md for the option, the space it needs and its limits).
 *
 * Config (`settings.tcp_context` in the agent's config file):
 * - `cgroup`: the cgroup v2 directory to attach to; default: the cgroup v2 mount's root (every socket of the host).
 *
 * Reading order: manifest -> config -> the probe.
 */
import { Schema } from "effect"
import type { Manifest } from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"
import { sharedMaps } from "./GoContext.ts"

/** One sock_ops program; a global probe, so it is attached at load rather than per process. */
export const manifest: Manifest = {
  cgroups: [{ program: "tcp_context", attach: "sock_ops" }]
}

/** The option's kind (RFC 6994 shared experiment), length and experiment ids (the low bit is the sampled flag). */
export const option = { kind: 254, length: 28, exid: 0x5052, exidSampled: 0x5053 } as const

/** The counters in `tcp_context_stats` (per CPU, by index). */
export const Stat = { written: 0, received: 1, noSpace: 2, cleared: 3 } as const

/** The probe's config. */
export const Config = Schema.Struct({
  /** An absolute cgroup v2 directory, e.g. /sys/fs/cgroup/unified/my.slice; absent: the cgroup v2 mount's root. */
  cgroup: Schema.optionalKey(Schema.String.pipe(
    Schema.check(Schema.makeFilter((s: string) => s.startsWith("/") ? undefined : "Expected an absolute path"))
  ))
})

/** The tcp_context daemon probe; it writes into go_context's `ps_conn_spans`, so it is loaded with go_context. */
export const TcpContext = Probe.daemon({
  name: "tcp_context",
  object: "tcp_context",
  manifest,
  config: Config,
  reuseMaps: { ps_conn_spans: sharedMaps.ps_conn_spans },
  cgroup: ({ config }) => config.cgroup
})

export default TcpContext
