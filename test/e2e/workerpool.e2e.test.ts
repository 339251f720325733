/**
 * context.Context parents through the CLI into a real OpenTelemetry Collector (root): `probescope run --no-builtins
 * --probe nethttp_server --probe nethttp_client --exe <workerpool fixture>`. The fixture's handlers hand r.Context()
 * to worker goroutines over a channel; a worker makes an HTTP request to /echo/{id} on the same server with a context
 * derived from it (value, WithoutCancel, WithTimeout). The worker's CLIENT span must be the child of the request's
 * SERVER span: its goroutine did not come from that request, so only the context chain (ps_go_parent,
 * docs/context-propagation.md) can say so. The echo's SERVER span continues the trace under the CLIENT span (same-host
 * linking).
 *
 * Also checked here: the walk's assumption (each standard context type has its parent Context as its first field)
 * in the fixture's DWARF for every supported Go release.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Option } from "effect"
import { beforeAll } from "vitest"
import { analyzeBuffer } from "../../src/target/GoBinary.ts"
import * as Collector from "../collector/Collector.ts"
import { buildWorkerPool } from "../instrumentations/WorkerPoolFixture.ts"
import type { ReceivedSpan } from "../receiver/Receiver.ts"
import { agentEnv, attachedLine, cli, get, root, spawnProc, startService } from "./harness.ts"
import * as Redis from "../servers/Redis.ts"

/** The supported Go releases (GoContext.goVersions) as the kernel tests build them. */
const goReleases = ["1.25.9", "1.26.8", "1.27.3"] as const
const fixtures = new Map<string, string>()

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  for (const v of goReleases) fixtures.set(v, buildWorkerPool(v))
  fixtures.set("stripped", buildWorkerPool("1.26.8", { stripped: true }))
}, 600_000)

/** Each standard context type and the field holding its parent (embedded types are named by their type). */
const parentFields = [
  ["context.cancelCtx", "Context"],
  ["context.timerCtx", "cancelCtx"],
  ["context.afterFuncCtx", "cancelCtx"],
  ["context.valueCtx", "Context"],
  ["context.withoutCancelCtx", "c"],
  ["context.stopCtx", "Context"]
] as const

describe("the context chain walk's layout assumption", () => {
  it.effect("every standard context type has its parent at offset 0, in Go 1.25, 1.26 and 1.27", () =>
    Effect.gen(function*() {
      for (const v of goReleases) {
        const file = fixtures.get(v)!
        const binary = yield* analyzeBuffer(file, fs.readFileSync(file))
        assert.strictEqual(binary.goVersion, v)
        const offsets = parentFields.map(([type, field]) => [
          type,
          field,
          Option.getOrUndefined(binary.field(type, field))
        ])
        assert.deepStrictEqual(
          offsets,
          parentFields.map(([type, field]) => [type, field, { offset: 0, source: "dwarf" }]),
          `Go ${v}`
        )
      }
    }), 120_000)
})

/**
 * Entries of `pid` in every map named ps_ctx_spans (keys start with the tgid, little-endian). Fails when there is no
 * such map, so 0 cannot be vacuous; a map closed between listing and dumping (another suite's) is skipped.
 */
const ctxEntries = (pid: number): number => {
  const maps = (JSON.parse(execFileSync("bpftool", ["-j", "map", "show"]).toString()) as Array<
    { readonly id: number; readonly name?: string }
  >).filter((m) => m.name === "ps_ctx_spans")
  assert.isAbove(maps.length, 0, "no map ps_ctx_spans")
  const tgid = [...new Uint8Array(new Uint32Array([pid]).buffer)].map((b) => `0x${b.toString(16).padStart(2, "0")}`)
  let n = 0
  for (const m of maps) {
    let out: string
    try {
      out = execFileSync("bpftool", ["-j", "map", "dump", "id", String(m.id)], { stdio: ["ignore", "pipe", "ignore"] })
        .toString()
    } catch {
      continue
    }
    const dump = JSON.parse(out) as Array<{ readonly key: ReadonlyArray<string> }>
    n += dump.filter((e) => e.key.slice(0, 4).join(" ") === tgid.join(" ")).length
  }
  return n
}


const startRedis = Redis.start

const one = (spans: ReadonlyArray<ReceivedSpan>, pred: (s: ReceivedSpan) => boolean, what: string) => {
  const found = spans.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} found in ${spans.map((s) => s.name).join(", ")}`)
  return found[0]!
}

const httpProbes = ["nethttp_client", "nethttp_server"]

/** The agent with the built-ins `probes` (by name) on the fixture, exporting to `collector`. */
const startAgent = (fixture: string, collector: Collector.Collector, pid: number, probes = httpProbes) =>
  Effect.gen(function*() {
    const agent = yield* spawnProc(
      cli,
      ["run", "--no-builtins", ...probes.flatMap((p) => ["--probe", p]), "--exe", fixture],
      agentEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
        OTEL_LOGS_EXPORTER: "none",
        OTEL_METRICS_EXPORTER: "none",
        OTEL_BSP_SCHEDULE_DELAY: "200"
      })
    )
    yield* agent.line("stderr", /^probescope: ready: (.*)$/m, "120 seconds")
    const attached = attachedLine(pid).exec(agent.stderr())
    assert.isNotNull(attached, agent.stderr())
    assert.deepStrictEqual(attached![2]!.split(", ").sort(), ["go_context", ...probes].sort())
    return agent
  })

/**
 * The three spans of one job: the SERVER span of `/<route>/<id>`, the worker's CLIENT span to /echo/<id>, and the
 * echo's SERVER span. Asserts the client is the child of the request's span and the echo the child of the client.
 */
const job = (spans: ReadonlyArray<ReceivedSpan>, route: "work" | "lazy", id: string, addr: string) => {
  const request = one(spans, (s) => s.kind === "SPAN_KIND_SERVER" && s.attributes["url.path"] === `/${route}/${id}`, id)
  assert.strictEqual(request.name, `GET /${route}/{id}`)
  assert.strictEqual(request.parentSpanId, "", `${id}: the request starts its trace`)
  const client = one(
    spans,
    (s) => s.kind === "SPAN_KIND_CLIENT" && s.attributes["url.full"] === `http://${addr}/echo/${id}`,
    `client ${id}`
  )
  assert.deepStrictEqual(
    [client.name, client.traceId, client.parentSpanId, client.attributes["http.response.status_code"]],
    ["GET", request.traceId, request.spanId, 200],
    `${id}: the worker's request is a child of /${route}/${id}`
  )
  const echo = one(
    spans,
    (s) => s.kind === "SPAN_KIND_SERVER" && s.attributes["url.path"] === `/echo/${id}`,
    `echo ${id}`
  )
  assert.deepStrictEqual(
    [echo.name, echo.traceId, echo.parentSpanId],
    ["GET /echo/{id}", request.traceId, client.spanId],
    `${id}: the echo continues the trace under the worker's request`
  )
  return { request, client, echo }
}

describe("context.Context parents through the CLI and a real collector", () => {
  it.live.each(goReleases)("Go %s: a worker-pool goroutine's request is a child of the request whose ctx it got", (v) =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const fixture = fixtures.get(v)!
      const app = yield* startService(fixture, [])
      const agent = yield* startAgent(fixture, collector, app.pid)

      const base = `http://${app.addr}`
      assert.strictEqual(yield* get(`${base}/work/a`), 200)
      assert.strictEqual(yield* get(`${base}/work/b`), 200)
      const spans = yield* collector.receiver.waitFor(6, "30 seconds")
      assert.strictEqual(spans.length, 6)
      const a = job(spans, "work", "a", app.addr)
      const b = job(spans, "work", "b", app.addr)
      assert.notStrictEqual(a.request.traceId, b.request.traceId)
      // Each server span unregistered its request's context when it ended.
      assert.strictEqual(ctxEntries(app.pid), 0)

      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
    }).pipe(Effect.scoped), 300_000)

  it.live("a stripped build (Request.ctx from the shipped offsets table): the same parents", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const fixture = fixtures.get("stripped")!
      const app = yield* startService(fixture, [])
      const agent = yield* startAgent(fixture, collector, app.pid)

      assert.strictEqual(yield* get(`http://${app.addr}/work/a`), 200)
      const spans = yield* collector.receiver.waitFor(3, "30 seconds")
      assert.strictEqual(spans.length, 3)
      job(spans, "work", "a", app.addr)
      assert.strictEqual(ctxEntries(app.pid), 0)

      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
    }).pipe(Effect.scoped), 300_000)

  it.live("a request served while another is in flight does not take the other's parent", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const fixture = fixtures.get("1.26.8")!
      const app = yield* startService(fixture, [])
      const agent = yield* startAgent(fixture, collector, app.pid)
      const base = `http://${app.addr}`

      // /lazy/a starts the lazy pool's only worker, which so inherits a's span on its goroutine (go_spans), and stays
      // in flight (its context registered) until /release.
      const held = fetch(`${base}/lazy/a?hold=1`, { signal: AbortSignal.timeout(30_000) }).then((r) => r.status)
      // a's job is done once its echo and the worker's request have ended.
      yield* collector.receiver.waitFor(2, "30 seconds")
      // a's context is the one registered while it is in flight.
      assert.strictEqual(ctxEntries(app.pid), 1)
      // b runs on that same worker while a is in flight; c on the program-start pool.
      assert.strictEqual(yield* get(`${base}/lazy/b`), 200)
      assert.strictEqual(yield* get(`${base}/work/c`), 200)
      assert.strictEqual(yield* get(`${base}/release`), 200)
      assert.strictEqual(yield* Effect.promise(() => held), 200)

      // Three jobs of three spans each, and /release.
      const spans = yield* collector.receiver.waitFor(10, "30 seconds")
      assert.strictEqual(spans.length, 10)
      const a = job(spans, "lazy", "a", app.addr)
      const b = job(spans, "lazy", "b", app.addr)
      const c = job(spans, "work", "c", app.addr)
      assert.strictEqual(new Set([a.request.traceId, b.request.traceId, c.request.traceId]).size, 3)
      // a was still in flight when b and c ended.
      assert.isTrue(BigInt(a.request.endTimeUnixNano) > BigInt(b.request.endTimeUnixNano))
      assert.isTrue(BigInt(a.request.endTimeUnixNano) > BigInt(c.request.endTimeUnixNano))
      const release = one(spans, (s) => s.attributes["url.path"] === "/release", "release")
      assert.deepStrictEqual([release.name, release.parentSpanId], ["GET /release", ""])
      assert.strictEqual(ctxEntries(app.pid), 0)

      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
    }).pipe(Effect.scoped), 300_000)

  it.live("gRPC and database/sql calls made by workers are children of the request (or RPC) whose ctx they got", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const fixture = fixtures.get("1.26.8")!
      const app = yield* startService(fixture, [])
      const agent = yield* startAgent(fixture, collector, app.pid, [...httpProbes, "grpc", "database_sql"])
      const base = `http://${app.addr}`

      assert.strictEqual(yield* get(`${base}/grpc/g`), 200)
      assert.strictEqual(yield* get(`${base}/sql/s`), 200)
      // /grpc/g: its server span, the worker's gRPC call, the RPC's server span, the RPC handler's worker's HTTP
      // request and the echo. /sql/s: its server span and four database/sql calls.
      const spans = yield* collector.receiver.waitFor(10, "30 seconds")
      assert.strictEqual(spans.length, 10)
      const kinds = (s: ReceivedSpan) => [s.name, s.kind, s.scope.name]
      // In start order.
      const children = (parent: ReceivedSpan) =>
        spans.filter((s) => s.parentSpanId === parent.spanId)
          .sort((x, y) => Number(BigInt(x.startTimeUnixNano) - BigInt(y.startTimeUnixNano)))
          .map((s) => {
            assert.strictEqual(s.traceId, parent.traceId, s.name)
            return s
          })

      const request = one(spans, (s) => s.attributes["url.path"] === "/grpc/g", "/grpc/g")
      assert.deepStrictEqual([...kinds(request), request.parentSpanId], [
        "GET /grpc/{id}",
        "SPAN_KIND_SERVER",
        "probescope/nethttp_server",
        ""
      ])
      const [rpcClient, ...noMore] = children(request)
      assert.deepStrictEqual(noMore, [])
      assert.deepStrictEqual(kinds(rpcClient!), ["probescope.test.Pool/Work", "SPAN_KIND_CLIENT", "probescope/grpc"])
      assert.strictEqual(rpcClient!.attributes["rpc.grpc.status_code"], 0)
      const [rpcServer, ...noMore2] = children(rpcClient!)
      assert.deepStrictEqual(noMore2, [])
      assert.deepStrictEqual(kinds(rpcServer!), ["probescope.test.Pool/Work", "SPAN_KIND_SERVER", "probescope/grpc"])
      // The RPC handler's ctx went to a worker: its HTTP request is the RPC server span's child.
      const [echoClient, ...noMore3] = children(rpcServer!)
      assert.deepStrictEqual(noMore3, [])
      assert.deepStrictEqual(
        [...kinds(echoClient!), echoClient!.attributes["url.full"]],
        ["GET", "SPAN_KIND_CLIENT", "probescope/nethttp_client", `${base}/echo/g`]
      )
      assert.deepStrictEqual(children(echoClient!).map(kinds), [[
        "GET /echo/{id}",
        "SPAN_KIND_SERVER",
        "probescope/nethttp_server"
      ]])

      const sqlRequest = one(spans, (s) => s.attributes["url.path"] === "/sql/s", "/sql/s")
      assert.deepStrictEqual([sqlRequest.name, sqlRequest.parentSpanId], ["GET /sql/{id}", ""])
      // Exec, then the transaction: BEGIN (BeginTx's ctx), its Exec, and COMMIT (found through Tx.ctx).
      assert.deepStrictEqual(
        children(sqlRequest).map((s) => [
          ...kinds(s),
          s.attributes["db.operation.name"],
          s.attributes["db.system.name"]
        ]),
        [
          ["INSERT jobs", "SPAN_KIND_CLIENT", "probescope/database_sql", "INSERT", "other_sql"],
          ["BEGIN", "SPAN_KIND_CLIENT", "probescope/database_sql", "BEGIN", "other_sql"],
          ["UPDATE jobs", "SPAN_KIND_CLIENT", "probescope/database_sql", "UPDATE", "other_sql"],
          ["COMMIT", "SPAN_KIND_CLIENT", "probescope/database_sql", "COMMIT", "other_sql"]
        ]
      )
      assert.strictEqual(ctxEntries(app.pid), 0)

      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
    }).pipe(Effect.scoped), 300_000)

  it.live("go-redis commands run by a worker are children of the request; set-up commands nest under the first", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const redisPort = yield* startRedis
      const fixture = fixtures.get("1.26.8")!
      const app = yield* startService(fixture, ["-redis", `127.0.0.1:${redisPort}`])
      const agent = yield* startAgent(fixture, collector, app.pid, [...httpProbes, "go_redis"])
      const base = `http://${app.addr}`

      assert.strictEqual(yield* get(`${base}/redis/r1`), 200)
      assert.strictEqual(yield* get(`${base}/redis/r2`), 200)
      // r1: its server span, SET, and inside SET the connection's set-up (HELLO, the CLIENT SETINFO pipeline); r2:
      // its server span and SET on the same connection.
      const spans = yield* collector.receiver.waitFor(6, "30 seconds")
      assert.strictEqual(spans.length, 6)
      const addr = `127.0.0.1:${redisPort}`
      const under = (parent: ReceivedSpan) =>
        spans.filter((s) => s.parentSpanId === parent.spanId).map((s) => {
          assert.deepStrictEqual([s.traceId, s.kind, s.scope.name], [
            parent.traceId,
            "SPAN_KIND_CLIENT",
            "probescope/go_redis"
          ])
          return s
        })
      const r1 = one(spans, (s) => s.attributes["url.path"] === "/redis/r1", "/redis/r1")
      const r2 = one(spans, (s) => s.attributes["url.path"] === "/redis/r2", "/redis/r2")
      assert.deepStrictEqual([r1.name, r1.parentSpanId, r2.name, r2.parentSpanId], [
        "GET /redis/{id}",
        "",
        "GET /redis/{id}",
        ""
      ])
      const [set1, ...noMore] = under(r1)
      assert.deepStrictEqual([set1!.name, noMore], [`SET ${addr}`, []])
      // Nested on the worker's goroutine: the outer command, not the request the ctx names, is their parent.
      assert.deepStrictEqual(under(set1!).map((s) => s.name).sort(), [`HELLO ${addr}`, `PIPELINE ${addr}`])
      const [set2, ...noMore2] = under(r2)
      assert.deepStrictEqual([set2!.name, noMore2, under(set2!)], [`SET ${addr}`, [], []])
      assert.strictEqual(ctxEntries(app.pid), 0)

      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
    }).pipe(Effect.scoped), 300_000)
})
