/**
 * Demo "built-in" probes for the composition example.
 *
 * FOLLOW-UP: replace these stand-ins with the real net/http server/client probes and the go_context daemon from
 * src/instrumentations/ once they land; the composition in main.ts stays the same (only the imports change).
 */
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"

/** The record the demo probes share: start/end, ids, a status and a path. */
export const DemoRecord = Binary.struct({
  start: Binary.u64,
  end: Binary.u64,
  traceId: Binary.hex(16),
  spanId: Binary.hex(8),
  parentSpanId: Binary.hex(8),
  pid: Binary.u32,
  status: Binary.u16,
  pathLen: Binary.u16,
  path: Binary.string(64, "pathLen")
})

type Rec = typeof DemoRecord extends Binary.Layout<infer T> ? T : never

const span = (r: Rec, kind: "server" | "client") => ({
  pid: r.pid,
  traceId: r.traceId,
  spanId: r.spanId,
  ...(r.parentSpanId === "0000000000000000" ? {} : { parentSpanId: r.parentSpanId }),
  traceFlags: 1,
  name: kind === "server" ? `GET ${r.path}` : "GET",
  kind,
  startMonoNs: r.start,
  endMonoNs: r.end,
  attributes: { "url.path": r.path, "http.response.status_code": r.status },
  status: { code: r.status >= 500 ? "error" as const : "unset" as const }
})

/** Stand-in for the goroutine→span-context daemon: shares its map, emits nothing. */
export const DemoContext = Probe.daemon({
  name: "demo/go-context",
  object: Probe.objectFile("go_context"),
  manifest: {
    library: { module: "std" },
    symbols: [{ name: "runtime.newproc1", entry: "uprobe_newproc1", return: "uprobe_newproc1_ret" }]
  },
  shares: ["go_spans"]
})

/** Stand-in for the net/http server probe. */
export const DemoHttpServer = Probe.instrument({
  name: "demo/http-server",
  object: Probe.objectFile("demo_http_server"),
  manifest: {
    library: { module: "std", package: "net/http", versions: ">=1.21" },
    symbols: [{ name: "net/http.serverHandler.ServeHTTP", entry: "uprobe_serve", return: "uprobe_serve_ret" }],
    fields: { method: { type: "net/http.Request", field: "Method" } }
  },
  reuseMaps: { go_spans: DemoContext.map("go_spans") },
  perTarget: {
    layout: Binary.struct({ method: Binary.u64 }),
    value: ({ offsets }) => ({ method: BigInt(offsets.method) })
  },
  record: Binary.schema(DemoRecord),
  span: (r) => span(r, "server")
})

/** Stand-in for the net/http client probe. */
export const DemoHttpClient = Probe.instrument({
  name: "demo/http-client",
  object: Probe.objectFile("demo_http_client"),
  manifest: {
    library: { module: "std", package: "net/http" },
    symbols: [{ name: "net/http.(*Transport).roundTrip", entry: "uprobe_rt", return: "uprobe_rt_ret" }]
  },
  reuseMaps: { go_spans: DemoContext.map("go_spans") },
  record: Binary.schema(DemoRecord),
  span: (r) => span(r, "client")
})
