/**
 * `probescope list`: every built-in and loaded probe, where it came from, and what it declares; `--no-builtins`
 * with nothing else is a usage error.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as Path from "node:path"
import * as ProbeList from "../../src/cli/ProbeList.ts"

const root = Path.resolve(import.meta.dirname, "../..")
const work = Path.join(root, "examples/custom-probe/WorkProbe.ts")
const flags = (probes: ReadonlyArray<string>, builtins?: boolean): ProbeList.Flags => ({
  probes,
  builtins: builtins === undefined ? Option.none() : Option.some(builtins),
  config: Option.none()
})

describe("probescope list", () => {
  it.effect("the built-ins and a module's probe, in the order given, each with its source", () =>
    Effect.gen(function*() {
      const listed = yield* ProbeList.list(yield* ProbeList.setup(flags([work])))
      assert.deepStrictEqual(listed.map((p) => [p.name, p.kind, p.source]), [
        ["go_context", "daemon", "builtin"],
        ["nethttp_server", "instrument", "builtin"],
        ["nethttp_client", "instrument", "builtin"],
        ["grpc", "instrument", "builtin"],
        ["database_sql", "instrument", "builtin"],
        ["go_redis", "instrument", "builtin"],
        ["kafka_go", "instrument", "builtin"],
        ["otel_trace", "instrument", "builtin"],
        ["go_panic", "instrument", "builtin"],
        ["openssl_http", "instrument", "builtin"],
        ["example/work", "instrument", work]
      ])
      const server = listed.find((p) => p.name === "nethttp_server")!
      assert.deepStrictEqual(server.symbols, [{
        name: "net/http.serverHandler.ServeHTTP",
        required: true,
        entry: "uprobe_ServeHTTP",
        return: "uprobe_ServeHTTP_ret",
        feature: null
      }])
      assert.deepStrictEqual(server.uses, [])
      assert.deepStrictEqual(server.signals, ["spans", "metrics"])
      assert.deepStrictEqual(server.metrics, ["http.server.request.duration"])
      assert.strictEqual(server.targets, "go")
      assert.include(server.attributes ?? [], "http.route")
      // Probes of every kind: a Go probe emitting logs, a shared library's, a tracepoint instrument's.
      const kinds = (name: string) => {
        const p = listed.find((l) => l.name === name)!
        return [p.targets, p.signals, p.library?.module ?? null, p.tracepoints.length]
      }
      assert.deepStrictEqual(kinds("openssl_http"), ["shared-library", ["spans", "metrics"], "libssl.so.3", 0])
      // tcp_metrics and tcp_context run only when named.
      assert.isUndefined(listed.find((l) => l.name === "tcp_metrics"))
      assert.isUndefined(listed.find((l) => l.name === "tcp_context"))
      const named = yield* ProbeList.list(yield* ProbeList.setup(flags(["tcp_metrics", "tcp_context"])))
      const panics = listed.find((l) => l.name === "go_panic")!
      assert.deepStrictEqual([panics.targets, panics.signals, panics.library?.module, panics.source], [
        "go",
        ["logs", "spans", "metrics"],
        "std",
        "builtin"
      ])
      const tcp = named.find((l) => l.name === "tcp_metrics")!
      assert.deepStrictEqual([tcp.targets, tcp.signals, tcp.library, tcp.tracepoints.length, tcp.source], [
        "any-process",
        ["metrics"],
        null,
        4,
        "builtin"
      ])
      const context = named.find((l) => l.name === "tcp_context")!
      assert.deepStrictEqual(
        [context.kind, context.targets, context.signals, context.cgroups, context.tracepoints, context.source],
        ["daemon", "global", [], ["sock_ops/tcp_context"], [], "builtin"]
      )
      assert.deepStrictEqual(tcp.metrics, [
        "tcp.connection.opened",
        "tcp.connection.failed",
        "tcp.connection.closed",
        "tcp.connection.duration",
        "tcp.retransmissions"
      ])
    }))

  it.effect("features: go_context's goroutine probes are one; go_panic uses it unless its settings say not", () =>
    Effect.gen(function*() {
      const listed = yield* ProbeList.list(yield* ProbeList.setup(flags([])))
      const context = listed.find((p) => p.name === "go_context")!
      assert.deepStrictEqual(context.symbols.map((s) => [s.name, s.feature]), [["runtime.newproc1", "goroutines"]])
      assert.deepStrictEqual(
        listed.filter((p) => p.uses.length > 0).map((p) => [p.name, p.uses]),
        [["nethttp_client", ["go_context.goroutines"]], ["grpc", ["go_context.goroutines"]],
          ["database_sql", ["go_context.goroutines"]], ["go_redis", ["go_context.goroutines"]],
          ["kafka_go", ["go_context.goroutines"]], ["otel_trace", ["go_context.goroutines"]],
          ["go_panic", ["go_context.goroutines"]]]
      )
      const text = ProbeList.format(listed)
      assert.include(text, "runtime.newproc1 (required; feature goroutines; entry uprobe_newproc1, return " +
        "uprobe_newproc1_ret)")
      const off = yield* ProbeList.list({
        ...(yield* ProbeList.setup(flags([]))),
        settings: { go_panic: { goroutines: false } }
      })
      assert.deepStrictEqual(off.find((p) => p.name === "go_panic")!.uses, [])
      assert.notInclude(ProbeList.format(off).split("\n\n").find((b) => b.startsWith("go_panic "))!, "uses")
    }))

  it.effect("the human form of a tracepoint instrument: any process, its tracepoints and metrics", () =>
    Effect.gen(function*() {
      const listed = yield* ProbeList.list(yield* ProbeList.setup(flags(["tcp_metrics"], false)))
      assert.deepStrictEqual(listed.map((p) => p.name), ["tcp_metrics"])
      const text = ProbeList.format(listed)
      assert.strictEqual(
        text,
        [
          "tcp_metrics  instrument  from builtin",
          "  library     none: every selected process, any language (tracepoints)",
          "  versions    any",
          "  tracepoints sock/inet_sock_set_state, tcp/tcp_retransmit_skb, sock/sock_recv_length, sock/sock_send_length",
          "  signals     metrics",
          "  metrics     tcp.connection.opened, tcp.connection.failed, tcp.connection.closed, tcp.connection.duration, " +
          "tcp.retransmissions",
          "  attributes  network.transport, network.type, server.port, tcp.connection.side, error.type"
        ].join("\n")
      )
    }))

  it.effect("the human form of one probe", () =>
    Effect.gen(function*() {
      const listed = yield* ProbeList.list(yield* ProbeList.setup(flags([work], false)))
      assert.strictEqual(
        ProbeList.format(listed),
        [
          `example/work  instrument  from ${work}`,
          "  library     std",
          "  versions    Go >=1.21",
          "  symbols     main.work (required; entry uprobe_work, return uprobe_work_ret)",
          "  signals     spans",
          "  attributes  not declared"
        ].join("\n")
      )
    }))

  it.effect("--no-builtins and no module: a usage error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ProbeList.setup(flags([], false)))
      assert.strictEqual(error._tag, "UsageError")
      assert.strictEqual(error.message, "no probes to run: --no-builtins needs at least one --probe NAME or MODULE")
    }))
})
