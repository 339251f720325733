/**
 * go_context: the daemon probe every Go instrumentation builds on. It emits no telemetry.
 *
 * It owns `go_spans`, a BPF hash map from (pid, goroutine g pointer) to the span context active on that goroutine
 * (trace id, span id, flags). A server probe sets the entry while it serves a request; a client probe reads it to
 * find its parent. Instrument probes take the map with `reuseMaps: { go_spans: GoContext.map("go_spans") }`, and
 * their C code declares it through bpf/include/probescope/go_context.h so every object agrees on its layout.
 *
 * It also carries context across `go` statements: a uprobe on `runtime.newproc1` (entry saves the parent g, each
 * RET copies the parent's entry to the new g returned in RAX), so a handler that fans out to goroutines still
 * parents their client spans under its server span.
 *
 * It also owns `ps_conn_spans`, TCP connection (client and server ip:port) → client span context: the client probe
 * publishes its span there before a request is written and a server probe in another process on this host looks its
 * connection up, so traces cross processes without writing a header (which kernel lockdown forbids).
 *
 * And `ps_ctx_spans`, (pid, context.Context value pointer) → span context: a server span registers its request's
 * context while it runs, and a client probe walks its own context's parent chain to it (`ps_go_parent` in
 * go_context.h), so work handed to a worker goroutine with the request's ctx is still parented under the request.
 * See docs/context-propagation.md.
 */
import * as Binary from "../probe/Binary.ts"
import * as Manifest from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"

/** Go releases the probes are written and tested for (the last three). */
export const goVersions = ">=1.25 <1.28"

/** What go_context attaches to: only the runtime, so it applies to every supported Go program. */
export const manifest = Manifest.make({
  library: { module: "std", package: "runtime", versions: goVersions },
  goVersions,
  symbols: [
    { name: "runtime.newproc1", entry: "uprobe_newproc1", return: "uprobe_newproc1_ret", feature: "goroutines" }
  ]
})

/** The go_context daemon probe. Its layer must be built before (and is provided to) the instrument probes. */
export const GoContext = Probe.daemon({
  name: "go_context",
  object: "go_context",
  manifest,
  shares: ["go_spans", "ps_conn_spans", "ps_ctx_spans"]
})

/**
 * `struct ps_ctx_key` (go_context.h): the key of `ps_ctx_spans`, a context value pointer of one process (its value
 * is a `struct ps_span_ctx`, `Http.SpanCtx`). For tests and tools that read the map.
 */
export const CtxKey = Binary.struct({
  tgid: Binary.u32,
  _pad: Binary.pad(4),
  ctx: Binary.u64
}, { struct: "ps_ctx_key" })

/**
 * The goroutine tracking above (the `runtime.newproc1` probes), for a probe's `uses`. A probe that looks a parent up
 * on the goroutine it runs on — which a `go` statement in the span's goroutine may have started — uses it; a probe
 * that only sets its goroutine's span (a server) does not. In a process where no attached probe uses it, every
 * goroutine the program starts costs it no trap.
 */
export const goroutines = GoContext.feature("goroutines")

/** The maps every Go instrument takes from go_context, for its `reuseMaps`. */
export const sharedMaps = {
  go_spans: GoContext.map("go_spans"),
  ps_conn_spans: GoContext.map("ps_conn_spans"),
  ps_ctx_spans: GoContext.map("ps_ctx_spans")
}
