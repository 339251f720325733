/**
 * database/sql through the CLI into a real OpenTelemetry Collector (root): `probescope run --no-builtins --probe
 * database_sql --probe nethttp_server --exe <dbsql fixture> --config <file>` (built-ins by name) (the file turns `queryText` on, cut at 30 characters) exporting OTLP over HTTP, the fixture on an SQLite
 * file. A transaction's route and the failing
 * query's route reach the collector as SERVER spans with their exact CLIENT children, and the
 * `db.client.operation.duration` histogram (exported at shutdown) counts them by operation, collection and error.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as Collector from "../collector/Collector.ts"
import { buildDbsql } from "../instrumentations/fixtures.ts"
import { agentEnv, attachedLine, cli, get, root, spawnProc } from "./harness.ts"

let fixture = ""
let tmp = ""

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  fixture = buildDbsql("1.26.8")
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-dbsql-e2e-"))
  fs.writeFileSync(path.join(tmp, "probescope.json"), JSON.stringify({
    probes: { settings: { database_sql: { queryText: true, maxQueryText: 30 } } }
  }))
}, 600_000)

afterAll(() => {
  if (tmp !== "") fs.rmSync(tmp, { recursive: true, force: true })
})

describe("database/sql through the CLI and a real collector", () => {
  it.live("a transaction and a failing query: exact CLIENT spans under the SERVER spans, and the histogram", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const app = yield* spawnProc(fixture, ["-driver", "sqlite", "-dsn", path.join(tmp, "db.sqlite"), "-port", "0"])
      const addr = (yield* app.line("stdout", /^listening on (\S+)$/m, "30 seconds"))[1]!
      const agent = yield* spawnProc(
        cli,
        [
          "run",
          "--no-builtins",
          // The built-ins by name: database_sql, and the net/http server probe for the handlers' spans.
          "--probe",
          "database_sql",
          "--probe",
          "nethttp_server",
          "--exe",
          fixture,
          "--config",
          path.join(tmp, "probescope.json")
        ],
        agentEnv({
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
          OTEL_LOGS_EXPORTER: "none",
          OTEL_METRIC_EXPORT_INTERVAL: "3600000",
          OTEL_BSP_SCHEDULE_DELAY: "200"
        })
      )
      yield* agent.line("stderr", /^probescope: ready: (.*)$/m, "120 seconds")
      const attached = attachedLine(app.child.pid!).exec(agent.stderr())
      assert.isNotNull(attached, agent.stderr())
      assert.deepStrictEqual(attached![2]!.split(", ").sort(), ["database_sql", "go_context", "nethttp_server"])

      assert.strictEqual(yield* get(`http://${addr}/setup`), 200)
      assert.strictEqual(yield* get(`http://${addr}/tx`), 200)
      assert.strictEqual(yield* get(`http://${addr}/fail`), 500)

      // 3 SERVER spans; CLIENT: INSERT; BEGIN, UPDATE, SELECT, COMMIT; the failing SELECT.
      const spans = yield* collector.receiver.waitFor(9, "30 seconds")
      const pid = app.child.pid!
      const children = (route: string) => {
        const server = spans.filter((s) => s.kind === "SPAN_KIND_SERVER" && s.attributes["url.path"] === route)
        assert.strictEqual(server.length, 1, route)
        return spans
          .filter((s) => s.parentSpanId === server[0]!.spanId)
          .sort((a, b) => (BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : 1))
          .map((s) => {
            assert.strictEqual(s.traceId, server[0]!.traceId)
            assert.strictEqual(s.resource["process.pid"], pid)
            return [s.scope.name, s.kind, s.name, s.attributes, s.status]
          })
      }
      const db = (op: string, extra: Record<string, unknown> = {}) => ({
        "db.system.name": "sqlite",
        "db.operation.name": op,
        ...extra
      })
      const ok = { code: "STATUS_CODE_UNSET", message: "" }
      const scope = "probescope/database_sql"
      assert.deepStrictEqual(children("/setup"), [
        [scope, "SPAN_KIND_CLIENT", "INSERT items", db("INSERT", {
          "db.collection.name": "items",
          // maxQueryText 30, from the config file.
          "db.query.text": "INSERT INTO items (id, name) V"
        }), ok]
      ])
      assert.deepStrictEqual(children("/tx"), [
        [scope, "SPAN_KIND_CLIENT", "BEGIN", db("BEGIN"), ok],
        [scope, "SPAN_KIND_CLIENT", "UPDATE items", db("UPDATE", {
          "db.collection.name": "items",
          "db.query.text": "UPDATE items SET name = 'y' WH"
        }), ok],
        [scope, "SPAN_KIND_CLIENT", "SELECT items", db("SELECT", {
          "db.collection.name": "items",
          "db.query.text": "SELECT name FROM items WHERE i"
        }), ok],
        [scope, "SPAN_KIND_CLIENT", "COMMIT", db("COMMIT"), ok]
      ])
      assert.deepStrictEqual(children("/fail"), [
        [scope, "SPAN_KIND_CLIENT", "SELECT missing_table", db("SELECT", {
          "db.collection.name": "missing_table",
          "db.query.text": "SELECT id FROM missing_table",
          "error.type": "*sqlite.Error"
        }), { code: "STATUS_CODE_ERROR", message: "*sqlite.Error" }]
      ])

      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
      // The collector may pass the series on in more than one request: wait for all six (an exact check follows).
      const points = (yield* collector.receiver.waitForMetrics(
        (ps) => ps.filter((p) => p.name === "db.client.operation.duration").length >= 6,
        "20 seconds"
      )).filter((p) => p.name === "db.client.operation.duration")
      const key = (a: Record<string, unknown>) => JSON.stringify(Object.entries(a).sort())
      assert.deepStrictEqual(
        points.map((p) => [p.type, p.unit, p.scope.name, p.resource["process.pid"], p.count, key(p.attributes)]).sort(),
        [
          [db("INSERT", { "db.collection.name": "items" }), 1],
          [db("BEGIN"), 1],
          [db("UPDATE", { "db.collection.name": "items" }), 1],
          [db("SELECT", { "db.collection.name": "items" }), 1],
          [db("COMMIT"), 1],
          [db("SELECT", { "db.collection.name": "missing_table", "error.type": "*sqlite.Error" }), 1]
        ].map(([a, n]) => ["histogram", "s", scope, pid, n, key(a as Record<string, unknown>)]).sort()
      )
      assert.deepStrictEqual(points[0]!.explicitBounds, [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10])
    }).pipe(Effect.scoped), 300_000)
})
