import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { SpanData } from "../../src/probe/Telemetry.ts"
import * as Exporter from "../../src/telemetry/Exporter.ts"
import { renderJsonLines, renderTrees } from "../../src/telemetry/internal/consoleTree.ts"
import { toReadableSpan } from "../../src/telemetry/internal/readableSpan.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"

const T1 = "4bf92f3577b34da6a3ce929d0e0e4736"
const T2 = "0af7651916cd43dd8448eb211c80319c"

const base = (over: Partial<SpanData> & Pick<SpanData, "spanId" | "name">): SpanData => ({
  pid: 100,
  probe: "net/http.server",
  traceId: T1,
  traceFlags: 1,
  kind: "internal",
  startMonoNs: 0n,
  endMonoNs: 0n,
  attributes: {},
  status: { code: "unset" },
  ...over
})

const resources = Effect.runSync(Effect.gen(function*() {
  const r = ProcessResources.make({ serviceName: undefined, attributes: {} })
  yield* r.register(100, { exe: "/srv/users-api", goVersion: "1.26.0" })
  yield* r.register(200, { exe: "/srv/billing", goVersion: "1.24.3" })
  return r
}))

const toSpans = (data: ReadonlyArray<SpanData>) =>
  data.map((d) => toReadableSpan(d, resources.resourceFor(d.pid), "0.1.0", (ns) => ns + 1_000_000_000_000_000_000n))

const sample = toSpans([
  base({
    spanId: "aaaaaaaaaaaaaaaa",
    parentSpanId: "ffffffffffffffff",
    parentIsRemote: true,
    name: "GET /users/{id}",
    kind: "server",
    startMonoNs: 1_000_000n,
    endMonoNs: 13_345_678n,
    attributes: { "http.request.method": "GET", "url.path": "/users/7", "http.response.status_code": 200 }
  }),
  base({
    spanId: "cccccccccccccccc",
    parentSpanId: "aaaaaaaaaaaaaaaa",
    name: "POST",
    kind: "client",
    startMonoNs: 6_000_000n,
    endMonoNs: 11_000_000n,
    attributes: { "server.address": "billing" },
    status: { code: "error", message: "connection refused" }
  }),
  base({
    spanId: "bbbbbbbbbbbbbbbb",
    parentSpanId: "aaaaaaaaaaaaaaaa",
    probe: "database/sql",
    name: "SELECT users",
    kind: "client",
    startMonoNs: 2_000_000n,
    endMonoNs: 5_210_000n,
    attributes: { "db.system.name": "postgresql", "db.query.text": "SELECT * FROM users WHERE id = $1" },
    status: { code: "ok" }
  }),
  base({
    pid: 200,
    spanId: "dddddddddddddddd",
    parentSpanId: "cccccccccccccccc",
    name: "POST /charge",
    kind: "server",
    startMonoNs: 7_000_000n,
    endMonoNs: 10_500_000n
  }),
  base({
    traceId: T2,
    pid: 200,
    spanId: "eeeeeeeeeeeeeeee",
    parentSpanId: "9999999999999999",
    name: "worker tick",
    startMonoNs: 500_000n,
    endMonoNs: 750_000n,
    attributes: { a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: [1, 2] }
  })
])

describe("console tree rendering", () => {
  it("groups by trace, nests children by start time, marks remote and missing parents", () => {
    assert.strictEqual(
      renderTrees(sample),
      [
        "trace 0af7651916cd43dd8448eb211c80319c",
        "└─ worker tick  internal  0.250 ms  UNSET  a=1 b=2 c=3 d=4 e=5 f=6 +2 more  (billing pid 200)  " +
        "[parent 9999999999999999 not shown]",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736",
        "└─ GET /users/{id}  server  12.346 ms  UNSET  http.request.method=GET url.path=/users/7 " +
        "http.response.status_code=200  (users-api pid 100)  [remote parent ffffffffffffffff]",
        "   ├─ SELECT users  client  3.210 ms  OK  db.system.name=postgresql " +
        "db.query.text=\"SELECT * FROM users WHERE id = $1\"",
        "   └─ POST  client  5.000 ms  ERROR \"connection refused\"  server.address=billing",
        "      └─ POST /charge  server  3.500 ms  UNSET  (billing pid 200)",
        ""
      ].join("\n")
    )
  })

  it("renders nothing for no spans", () => {
    assert.strictEqual(renderTrees([]), "")
  })

  it("JSON lines carry ids, exact epoch times, status, resource and scope", () => {
    const lines = renderJsonLines(sample.slice(0, 2)).trimEnd().split("\n").map((l) => JSON.parse(l))
    assert.strictEqual(lines.length, 2)
    assert.deepStrictEqual(lines[0], {
      traceId: T1,
      spanId: "aaaaaaaaaaaaaaaa",
      parentSpanId: "ffffffffffffffff",
      parentIsRemote: true,
      name: "GET /users/{id}",
      kind: "server",
      startTimeUnixNano: "1000000000001000000",
      endTimeUnixNano: "1000000000013345678",
      durationMs: 12.345678,
      status: { code: "UNSET" },
      attributes: { "http.request.method": "GET", "url.path": "/users/7", "http.response.status_code": 200 },
      resource: resources.attributesFor(100),
      scope: { name: "probescope/net/http.server", version: "0.1.0" }
    })
    assert.deepStrictEqual(lines[1].status, { code: "ERROR", message: "connection refused" })
  })

  it.effect("the console exporter writes the rendering through its writer", () =>
    Effect.gen(function*() {
      const out: Array<string> = []
      const exporter = Exporter.console("tree", (t) => out.push(t))
      yield* exporter.export(sample.slice(0, 1))
      assert.deepStrictEqual(out, [renderTrees(sample.slice(0, 1))])
      const json: Array<string> = []
      yield* Exporter.console("jsonl", (t) => json.push(t)).export(sample.slice(0, 1))
      assert.deepStrictEqual(json, [renderJsonLines(sample.slice(0, 1))])
    }))
})
