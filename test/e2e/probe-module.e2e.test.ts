/**
 * A custom probe through the CLI, as a user runs one: `probescope run --probe examples/custom-probe/WorkProbe.ts
 * --exe <workapp>` (root), the Go app started before the agent so it is among the processes selected at start. The
 * agent says `ready` only after the attach line, and the probe's spans reach the OTLP receiver with the app's
 * resource. Then `list` names the probe, and a module that exports nothing usable is one line, exit 1.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as Receiver from "../receiver/Receiver.ts"
import { agentEnv, attachedLine, cli, root, runCli, spawnProc } from "./harness.ts"

const probe = "examples/custom-probe/WorkProbe.ts"
let dir = ""
let app = ""

beforeAll(() => {
  execFileSync("make", ["-C", path.join(root, "bpf"), "out/custom_work.bpf.o"], { stdio: "ignore" })
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-module-e2e-"))
  app = path.join(dir, "workapp")
  execFileSync("go", ["build", "-o", app, "."], { cwd: path.join(root, "examples/custom-probe/app") })
}, 300_000)

afterAll(() => {
  if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
})

describe("probescope run --probe", () => {
  it.live("a custom probe's spans reach the receiver; ready comes after the attach", () =>
    Effect.gen(function*() {
      const work = yield* spawnProc(app, [])
      yield* work.line("stdout", /^pid \d+$/m, "30 seconds")
      const receiver = yield* Receiver.make()
      const agent = yield* spawnProc(
        cli,
        ["run", "--probe", path.join(root, probe), "--exe", app],
        agentEnv({
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.httpEndpoint,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
          OTEL_METRICS_EXPORTER: "none",
          OTEL_BSP_SCHEDULE_DELAY: "200"
        })
      )
      const ready = yield* agent.line("stderr", /^probescope: ready: (.*)$/m, "120 seconds")
      assert.strictEqual(
        ready[1],
        `probes go_context, nethttp_server, nethttp_client, grpc, database_sql, go_redis, kafka_go, otel_trace, go_panic, openssl_http, example/work; watching ${app}; 1 process(es) attached`
      )
      // The attach line was said before `ready`: the process was attached when the agent said it was ready.
      const attached = attachedLine(work.pid).exec(agent.stderr())
      assert.isNotNull(attached, agent.stderr())
      // go_panic, a default built-in, applies to every Go program, and brings go_context along.
      assert.strictEqual(attached![2], "example/work, go_context, go_panic")
      assert.isBelow(attached!.index, ready.index)

      // main.work runs every 200 ms.
      const spans = yield* receiver.waitFor(3, "30 seconds")
      for (const s of spans.slice(0, 3)) {
        assert.strictEqual(s.name, "main.work")
        assert.strictEqual(s.scope.name, "probescope/example/work")
        assert.strictEqual(s.resource["process.pid"], work.pid)
        assert.strictEqual(s.resource["service.name"], "workapp")
        assert.isAtLeast(Number(s.attributes["work.n"]), 1000)
      }

      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
      assert.match(agent.stderr(), /^probescope: example\/work: \d+ records, 0 decode errors/m)
    }).pipe(Effect.scoped))

  it.live("a probe of one's own that cannot load stops run before ready, in one line (its object given as a URL)", () =>
    Effect.gen(function*() {
      // Inside the checkout, so its `probescope/probe` import resolves here as an installed package's would.
      const modules = path.join(root, "test/.cache/e2e")
      fs.mkdirSync(modules, { recursive: true })
      const bad = path.join(modules, `missing-object-${process.pid}.mjs`)
      fs.writeFileSync(bad, [
        `import { Binary, Probe } from "probescope/probe"`,
        `export default Probe.instrument({`,
        `  name: "test/missing-object",`,
        `  object: new URL("./no-such.bpf.o", import.meta.url),`,
        `  manifest: { library: { module: "std" }, symbols: [{ name: "main.work", entry: "uprobe_work" }] },`,
        `  record: Binary.schema(Binary.struct({ n: Binary.u64 })),`,
        `  span: () => undefined`,
        `})`,
        ``
      ].join("\n"))
      try {
        const r = yield* runCli(["run", "--probe", bad, "--exe", app], { OTEL_METRICS_EXPORTER: "none" })
        assert.deepStrictEqual([r.code, r.stderr], [
          1,
          `probescope: probe test/missing-object: open: ${path.join(modules, "no-such.bpf.o")}: No such file or ` +
          `directory (ENOENT)\n`
        ])
      } finally {
        fs.rmSync(bad, { force: true })
      }
    }))

  it.live("list names the module's probe; a module with nothing usable is one line, exit 1", () =>
    Effect.gen(function*() {
      const listed = yield* runCli(["list", "--json", "--no-builtins", "--probe", path.join(root, probe)])
      assert.strictEqual(listed.code, 0, listed.stderr)
      const names = (JSON.parse(listed.stdout) as { probes: Array<{ name: string; source: string }> }).probes
      assert.deepStrictEqual(names.map((p) => [p.name, p.source]), [["example/work", path.join(root, probe)]])

      const empty = path.join(dir, "empty.mjs")
      fs.writeFileSync(empty, "export const x = 1\n")
      const r = yield* runCli(["run", "--probe", empty, "--exe", app])
      assert.deepStrictEqual([r.code, r.stderr], [
        1,
        `probescope: probe module ${empty}: exports no probe (expected a default export, an export named "probe" or ` +
        `"probes", or named exports, holding a Probe.instrument/Probe.daemon definition, an array of them, or a ` +
        `Layer)\n`
      ])
    }))
})
