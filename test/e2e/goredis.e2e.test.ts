/**
 * go-redis through the CLI into a real OpenTelemetry Collector (root): `probescope run --no-builtins --probe
 * go_redis --probe nethttp_server --exe <goredis fixture>` (built-ins by name) exporting
 * OTLP over HTTP, the fixture talking to a redis-server of the test's own (free loopback port, temporary folder, no persistence). Each request's
 * redis spans reach the collector as CLIENT children of its server span, the refused command with status ERROR, and
 * the `db.client.operation.duration` histogram arrives with the metric's attributes.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { Effect } from "effect"
import { beforeAll } from "vitest"
import * as GoRedis from "../../src/instrumentations/GoRedis.ts"
import * as Collector from "../collector/Collector.ts"
import { buildGoRedis } from "../instrumentations/GoRedisFixture.ts"
import type { ReceivedSpan } from "../receiver/Receiver.ts"
import { agentEnv, attachedLine, cli, get, root, spawnProc, startService } from "./harness.ts"
import * as Redis from "../servers/Redis.ts"

let fixture = ""

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  fixture = buildGoRedis("1.26.8")
}, 600_000)

/** Redis before 7.2 has no CLIENT SETINFO: go-redis's connection set-up pipeline then fails (and go-redis goes on). */
const setinfoFails = (() => {
  const m = /v=(\d+)\.(\d+)/.exec(execFileSync("redis-server", ["--version"]).toString())
  return m !== null && (Number(m[1]) < 7 || (Number(m[1]) === 7 && Number(m[2]) < 2))
})()


const startRedis = Redis.start

const one = (spans: ReadonlyArray<ReceivedSpan>, pred: (s: ReceivedSpan) => boolean, what: string) => {
  const found = spans.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} found`)
  return found[0]!
}

describe("go-redis through the CLI and a real collector", () => {
  it.live("commands and a pipeline: CLIENT spans under the request spans, a refused command ERROR, the histogram", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const redisPort = yield* startRedis
      const app = yield* startService(fixture, ["-redis", `127.0.0.1:${redisPort}`])
      const agent = yield* spawnProc(
        cli,
        [
          "run",
          "--no-builtins",
          // The built-ins by name: go_redis, and the net/http server probe for the handlers' spans.
          "--probe",
          "go_redis",
          "--probe",
          "nethttp_server",
          "--exe",
          fixture
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
      const attached = attachedLine(app.pid).exec(agent.stderr())
      assert.isNotNull(attached, agent.stderr())
      assert.deepStrictEqual(attached![2]!.split(", ").sort(), ["go_context", "go_redis", "nethttp_server"])

      const base = `http://${app.addr}`
      assert.strictEqual(yield* get(`${base}/set?k=a&v=1`), 200)
      assert.strictEqual(yield* get(`${base}/wrongtype?k=w`), 500)
      assert.strictEqual(yield* get(`${base}/pipeline?k=p`), 200)

      // 3 server spans; SET (+ HELLO and the CLIENT SETINFO pipeline inside it), SET + LPUSH, PIPELINE.
      const spans = yield* collector.receiver.waitFor(9, "30 seconds")
      assert.strictEqual(spans.length, 9)
      const server = (route: string) => one(spans, (s) => s.attributes["http.route"] === route, route)
      const addr = `127.0.0.1:${redisPort}`
      const attributes = (op: string, more: object = {}) => ({
        "db.system.name": "redis",
        "db.operation.name": op,
        "db.namespace": "0",
        "server.address": "127.0.0.1",
        "server.port": redisPort,
        ...more
      })
      const ok = { code: "STATUS_CODE_UNSET", message: "" }
      const child = (parent: ReceivedSpan, op: string) => {
        const what = `${op} under ${parent.name}`
        const s = one(spans, (s) => s.parentSpanId === parent.spanId && s.name === `${op} ${addr}`, what)
        assert.strictEqual(s.kind, "SPAN_KIND_CLIENT")
        assert.strictEqual(s.scope.name, "probescope/go_redis")
        assert.strictEqual(s.resource["process.pid"], app.pid)
        assert.strictEqual(s.traceId, parent.traceId)
        return s
      }
      const set = child(server("/set"), "SET")
      assert.deepStrictEqual([set.attributes, set.status], [attributes("SET"), ok])
      const hello = child(set, "HELLO")
      assert.deepStrictEqual([hello.attributes, hello.status], [attributes("HELLO"), ok])
      const setinfo = child(set, "PIPELINE")
      assert.deepStrictEqual(
        [setinfo.attributes, setinfo.status],
        setinfoFails
          ? [
            attributes("PIPELINE", {
              "db.operation.batch.size": 2,
              "db.response.status_code": "ERR",
              "error.type": "ERR"
            }),
            { code: "STATUS_CODE_ERROR", message: "ERR unknown subcommand 'setinfo'. Try CLIENT HELP." }
          ]
          : [attributes("PIPELINE", { "db.operation.batch.size": 2 }), ok]
      )
      const wrongtype = server("/wrongtype")
      assert.deepStrictEqual(child(wrongtype, "SET").attributes, attributes("SET"))
      const lpush = child(wrongtype, "LPUSH")
      assert.deepStrictEqual([lpush.attributes, lpush.status], [
        attributes("LPUSH", { "db.response.status_code": "WRONGTYPE", "error.type": "WRONGTYPE" }),
        { code: "STATUS_CODE_ERROR", message: "WRONGTYPE Operation against a key holding the wrong kind of value" }
      ])
      const pipeline = child(server("/pipeline"), "PIPELINE")
      assert.deepStrictEqual([pipeline.attributes, pipeline.status], [
        attributes("PIPELINE", { "db.operation.batch.size": 3 }),
        ok
      ])

      // Stopping the agent exports the metrics once, on the way out.
      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
      const metric = (op: string, error?: string) => ({
        "db.system.name": "redis",
        "db.operation.name": op,
        "server.address": "127.0.0.1",
        "server.port": redisPort,
        ...(error === undefined ? {} : { "error.type": error })
      })
      const expected = [
        [metric("SET"), 2],
        [metric("HELLO"), 1],
        [metric("LPUSH", "WRONGTYPE"), 1],
        ...(setinfoFails ? [[metric("PIPELINE", "ERR"), 1], [metric("PIPELINE"), 1]] : [[metric("PIPELINE"), 2]])
      ]
      // The collector may pass the series on in more than one request: wait for all of them (compared exactly below).
      const points = (yield* collector.receiver.waitForMetrics(
        (ps) => ps.filter((p) => p.name === "db.client.operation.duration").length >= expected.length,
        "20 seconds"
      )).filter((p) => p.name === "db.client.operation.duration")
      // Compared as sorted key-value lists: the receiver's attribute order is not the span's.
      const key = ([a, n]: readonly [object, unknown]) => JSON.stringify([Object.entries(a).sort(), n])
      assert.deepStrictEqual(points.map((p) => key([p.attributes, p.count])).sort(), expected.map((e) =>
        key(e as [object, number])
      ).sort())
      for (const p of points) {
        assert.deepStrictEqual(
          [p.type, p.unit, p.description, p.explicitBounds, p.scope.name, p.resource["process.pid"]],
          [
            "histogram",
            "s",
            GoRedis.operationDuration.description,
            [...GoRedis.operationDuration.boundaries!],
            "probescope/go_redis",
            app.pid
          ]
        )
        assert.isTrue(p.sum! > 0 && p.sum! < 10, `sum ${p.sum}`)
      }
    }).pipe(Effect.scoped), 300_000)
})
