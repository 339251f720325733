/** Probe definitions shared by the probe and manager tests (no BPF object is read: the fake kernel loads by name). */
import { Effect, Schema } from "effect"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"

export const Record = Binary.struct({
  start: Binary.u64,
  end: Binary.u64,
  traceId: Binary.hex(16),
  spanId: Binary.hex(8),
  status: Binary.u16,
  pathLen: Binary.u16,
  path: Binary.string(32, "pathLen")
})

export const record = (over: Partial<typeof Record extends Binary.Layout<infer T> ? T : never> = {}) =>
  Record.encode({
    start: 100n,
    end: 250n,
    traceId: "0af7651916cd43dd8448eb211c80319c",
    spanId: "b7ad6b7169203331",
    status: 200,
    pathLen: 0,
    path: "/hello",
    ...over
  })

/** A daemon owning the goroutine→span-context map. */
export const GoCtx = Probe.daemon({
  name: "test/goctx",
  object: Probe.objectFile("test_goctx"),
  manifest: {
    library: { module: "std" },
    symbols: [{ name: "runtime.newproc1", entry: "uprobe_newproc1" }]
  },
  shares: ["go_spans"]
})

const spanOf = (r: typeof Record extends Binary.Layout<infer T> ? T : never, name: string) => ({
  pid: 0,
  traceId: r.traceId,
  spanId: r.spanId,
  traceFlags: 1,
  name: `${name} ${r.path}`,
  kind: "server" as const,
  startMonoNs: r.start,
  endMonoNs: r.end,
  attributes: { "http.response.status_code": r.status },
  status: { code: r.status >= 500 ? "error" as const : "unset" as const }
})

export const Server = Probe.instrument({
  name: "test/server",
  object: Probe.objectFile("test_server"),
  manifest: {
    library: { module: "std", versions: ">=1.21" },
    symbols: [
      { name: "net/http.serverHandler.ServeHTTP", entry: "uprobe_serve", return: "uprobe_serve_ret" },
      { name: "net/http.(*conn).hijack", entry: "uprobe_hijack", optional: true }
    ],
    fields: {
      method: { type: "net/http.Request", field: "Method" },
      url: { type: "net/http.Request", field: "URL" }
    }
  },
  config: Schema.Struct({
    maxPath: Schema.Number.pipe(
      Schema.check(Schema.isBetween({ minimum: 1, maximum: 32 })),
      Schema.withDecodingDefault(Effect.succeed(32))
    ),
    skipHealth: Schema.Boolean.pipe(Schema.withDecodingDefault(Effect.succeed(false)))
  }),
  constants: ({ config }) => ({ max_path: config.maxPath }),
  reuseMaps: { go_spans: GoCtx.map("go_spans") },
  perTarget: {
    layout: Binary.struct({ method: Binary.u64, url: Binary.u64 }),
    value: ({ offsets }) => ({ method: BigInt(offsets.method), url: BigInt(offsets.url) })
  },
  record: Binary.schema(Record),
  span: (r, { config }) => (config.skipHealth && r.path === "/health" ? undefined : spanOf(r, "GET"))
})

export const Client = Probe.instrument({
  name: "test/client",
  object: Probe.objectFile("test_client"),
  manifest: {
    library: { module: "std" },
    symbols: [{ name: "net/http.(*Transport).roundTrip", entry: "uprobe_rt", return: "uprobe_rt_ret" }]
  },
  reuseMaps: { go_spans: GoCtx.map("go_spans") },
  record: Binary.schema(Record),
  span: (r) => ({ ...spanOf(r, "client"), kind: "client" as const })
})

/** A gRPC probe: applies only where the module is linked. */
export const Grpc = Probe.instrument({
  name: "test/grpc",
  object: Probe.objectFile("test_grpc"),
  manifest: {
    library: { module: "google.golang.org/grpc", versions: ">=1.40.0 <2" },
    symbols: [{ name: "google.golang.org/grpc.(*Server).handleStream", entry: "uprobe_hs" }]
  },
  record: Binary.schema(Record),
  span: (r) => spanOf(r, "grpc")
})

export const functions = {
  "runtime.newproc1": { entryOffset: 0x1000 },
  "net/http.serverHandler.ServeHTTP": { entryOffset: 0x2014, returnOffsets: [0x2100, 0x2180] },
  "net/http.(*Transport).roundTrip": { entryOffset: 0x3014, returnOffsets: [0x3200] }
}

export const fields = { "net/http.Request.Method": 0, "net/http.Request.URL": 16 }
