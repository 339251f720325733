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
        ["example/work", "instrument", work]
      ])
      const server = listed.find((p) => p.name === "nethttp_server")!
      assert.deepStrictEqual(server.symbols, [{
        name: "net/http.serverHandler.ServeHTTP",
        required: true,
        entry: "uprobe_ServeHTTP",
        return: "uprobe_ServeHTTP_ret"
      }])
      assert.deepStrictEqual(server.signals, ["spans"])
      assert.include(server.attributes ?? [], "http.route")
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
      assert.strictEqual(error.message, "no probes to run: --no-builtins needs at least one --probe MODULE")
    }))
})
