/**
 * The database/sql probe on the real kernel (root): a PostgreSQL server started here (Debian's postgresql 15, initdb
 * and postgres as `nobody` in a temp dir, on a free loopback port, stopped at the end) and an SQLite file. The fixture
 * (test/fixtures/go/dbsql, an HTTP server) runs each kind of call in its own route through pgx's database/sql driver
 * and through modernc's pure-Go sqlite; the agent's Manager attaches go_context + nethttp_server + database_sql. Each
 * route's CLIENT spans are checked exactly (name, kind, attributes with the opted-in query text, status, parent = the
 * route's SERVER span), so is the failing query's ERROR status and error.type, and one duration measurement per span.
 * A stripped build (no symbols, no DWARF) is instrumented with the shipped offsets table's offsets. With the
 * program's read-only data paged out before each request, the spans are the same (read from the process instead).
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Layer, Result } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as DatabaseSql from "../../src/instrumentations/DatabaseSql.ts"
import * as NetHttpServer from "../../src/instrumentations/NetHttpServer.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as TargetEvent from "../../src/manager/TargetEvent.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedMeasurements, CapturedSpans } from "../../src/probe/ProbeTest.ts"
import type { SpanData } from "../../src/probe/Telemetry.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import { TargetAnalysis } from "../../src/target/GoBinary.ts"
import * as Offsets from "../../src/target/Offsets.ts"
import { buildDbsql } from "./fixtures.ts"

const root = path.resolve(import.meta.dirname, "../..")
const PG_BIN = "/usr/lib/postgresql/15/bin"
const versions = ["1.25.9", "1.26.8", "1.27.3"]
const binaries = new Map<string, string>()
let stripped = ""
let pie = ""
const procs: Array<ChildProcess> = []
let tmp = ""
let postgres: ChildProcess | undefined
let pgPort = 0
let sqliteFiles = 0

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = net.createServer()
    s.on("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

/** setpriv execs the program itself (no wrapper process), so the spawned pid is postgres's own. */
const AS_NOBODY = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]

/** Start PostgreSQL as `nobody` (initdb refuses root) in a temp dir, on a free port; resolves once it accepts. */
const startPostgres = async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-pg-"))
  fs.chmodSync(tmp, 0o755)
  execFileSync("chown", ["nobody:nogroup", tmp])
  execFileSync("setpriv", [...AS_NOBODY, `${PG_BIN}/initdb`, "-D", `${tmp}/data`, "-U", "postgres",
    "--auth=trust", "-N"], { cwd: tmp, stdio: "ignore", timeout: 60_000 })
  pgPort = await freePort()
  postgres = spawn("setpriv", [...AS_NOBODY, `${PG_BIN}/postgres`, "-D", `${tmp}/data`, "-k", tmp, "-p",
    String(pgPort), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"], { cwd: tmp, stdio: ["ignore", "ignore",
    "pipe"] })
  await new Promise<void>((resolve, reject) => {
    let log = ""
    const timer = setTimeout(() => reject(new Error(`postgres did not start: ${log}`)), 30_000)
    postgres!.stderr!.on("data", (chunk: Buffer) => {
      log += chunk.toString()
      if (log.includes("database system is ready to accept connections")) {
        clearTimeout(timer)
        resolve()
      }
    })
    postgres!.on("exit", (code) => reject(new Error(`postgres exited with ${code}: ${log}`)))
  })
}

beforeAll(async () => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  for (const v of versions) binaries.set(v, buildDbsql(v))
  stripped = buildDbsql("1.26.8", { stripped: true })
  pie = buildDbsql("1.26.8", { pie: true })
  await startPostgres()
}, 900_000)

afterAll(async () => {
  for (const p of procs) p.kill("SIGKILL")
  if (postgres !== undefined && postgres.exitCode === null) {
    // SIGINT: postgres's fast shutdown (its backends end with it); SIGKILL if it lingers.
    const exited = new Promise((resolve) => postgres!.on("exit", resolve))
    postgres.kill("SIGINT")
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))])
    if (postgres.exitCode === null) postgres.kill("SIGKILL")
  }
  if (tmp !== "") fs.rmSync(tmp, { recursive: true, force: true })
}, 30_000)

/** Start the fixture and wait for its "listening on <addr>" line. */
const start = (exe: string, args: ReadonlyArray<string>) =>
  Effect.callback<{ readonly pid: number; readonly addr: string }>((resume) => {
    const child = spawn(exe, [...args, "-port", "0"], { stdio: ["ignore", "pipe", "inherit"] })
    procs.push(child)
    let out = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const m = /listening on (\S+)/.exec(out)
      if (m !== null) resume(Effect.succeed({ pid: child.pid!, addr: m[1]! }))
    })
    child.on("exit", (code) => resume(Effect.die(new Error(`${exe} exited with ${code}`))))
  })

const get = (url: string) =>
  Effect.promise(async () => {
    const res = await fetch(url)
    return { status: res.status, body: (await res.text()).trim() }
  })

const agentWith = (table?: Offsets.OffsetsTable) => ManagerM.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(
    DatabaseSql.DatabaseSql.layerWith({ queryText: true }),
    NetHttpServer.NetHttpServer.layer
  )),
  Layer.provideMerge(Layer.mergeAll(
    BpfLive.layer,
    ProbeTest.layerSink,
    ProbeTest.layerTargets,
    TracingConfig.layer(TracingConfig.defaultSampler),
    table === undefined ? GoBinary.layer : Layer.effect(TargetAnalysis, GoBinary.make({ table }))
  ))
)
const agent = agentWith()

/** The shipped table without its Go 1.26 build of the standard library. */
const withoutGo126: Offsets.OffsetsTable = {
  ...Offsets.shipped,
  modules: {
    ...Offsets.shipped.modules,
    std: {
      ...Offsets.shipped.modules["std"]!,
      builds: Object.fromEntries(Object.entries(Offsets.shipped.modules["std"]!.builds).filter(([v]) =>
        !v.startsWith("1.26.")
      ))
    }
  }
}

/** One expected CLIENT span: name, attributes (the query text included), error type when it failed. */
interface Expected {
  readonly op: string
  readonly collection?: string
  readonly text?: string
  readonly error?: string
}

/** Each route in request order, with its body and its CLIENT spans in start order. */
const routes = (p: string, errorType: string): ReadonlyArray<{
  readonly path: string
  readonly status: number
  readonly spans: ReadonlyArray<Expected>
}> => [
  { path: "/setup", status: 200, spans: [
    { op: "INSERT", collection: "items", text: `INSERT INTO items (id, name) VALUES (${p}, 'x')` }
  ] },
  { path: "/query", status: 200, spans: [
    { op: "SELECT", collection: "items", text: `SELECT id, name FROM items WHERE id > ${p}` }
  ] },
  { path: "/queryrow", status: 200, spans: [
    { op: "SELECT", collection: "items", text: "SELECT count(*) FROM items" }
  ] },
  { path: "/prepared", status: 200, spans: [
    { op: "SELECT", collection: "items", text: `SELECT name FROM items WHERE id = ${p}` },
    { op: "SELECT", collection: "items", text: `SELECT name FROM items WHERE id = ${p}` }
  ] },
  { path: "/tx", status: 200, spans: [
    { op: "BEGIN" },
    { op: "UPDATE", collection: "items", text: `UPDATE items SET name = 'y' WHERE id = ${p}` },
    { op: "SELECT", collection: "items", text: `SELECT name FROM items WHERE id = ${p}` },
    { op: "COMMIT" }
  ] },
  { path: "/rollback", status: 200, spans: [{ op: "BEGIN" }, { op: "ROLLBACK" }] },
  { path: "/fail", status: 500, spans: [
    { op: "SELECT", collection: "missing_table", text: "SELECT id FROM missing_table", error: errorType }
  ] }
]

const drivers = [
  {
    name: "pgx (PostgreSQL)",
    system: "postgresql",
    placeholder: "$1",
    errorType: "*pgconn.PgError",
    // From the DSN pgx's connector holds.
    server: () => ({ "db.namespace": "postgres", "server.address": "127.0.0.1", "server.port": pgPort }),
    args: () => ["-driver", "pgx", "-dsn", `postgres://postgres@127.0.0.1:${pgPort}/postgres?sslmode=disable`]
  },
  {
    name: "modernc sqlite",
    system: "sqlite",
    placeholder: "?",
    errorType: "*sqlite.Error",
    // A file: no server, and the DSN names no database.
    server: () => ({}),
    // A new file per run, in the temp dir afterAll removes.
    args: () => ["-driver", "sqlite", "-dsn", path.join(tmp, `sqlite-${++sqliteFiles}.db`)]
  }
] as const

/** Each Go release's build, and one position-independent build (type names found relative to the probe address). */
const builds = [...versions.map((v) => ({ name: `Go ${v}`, exe: () => binaries.get(v)! })), {
  name: "Go 1.26.8 -buildmode=pie",
  exe: () => pie
}]

/**
 * Every route of `driver` on `exe`, each CLIENT span checked exactly under its request's span, and one duration
 * measurement per span. `extra`: more arguments for the fixture.
 */
const everyRoute = (exe: string, driver: typeof drivers[number], extra: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    const app = yield* start(exe, [...driver.args(), ...extra])
    const analysis = yield* TargetAnalysis
    const manager = yield* Manager
    yield* manager.handle(TargetEvent.TargetEvent.Started({ target: yield* analysis.analyzePid(app.pid) }))
    assert.deepStrictEqual((yield* manager.targets).map((t) => [...t.probes].sort()), [
      ["database_sql", "go_context", "nethttp_server"]
    ])
    const expected = routes(driver.placeholder, driver.errorType)
    for (const r of expected) {
      const res = yield* get(`http://${app.addr}${r.path}`)
      assert.strictEqual(res.status, r.status, `${r.path}: ${res.body}`)
    }
    const clientCount = expected.reduce((n, r) => n + r.spans.length, 0)
    const spans = yield* (yield* CapturedSpans).take(expected.length + clientCount).pipe(
      Effect.timeout("15 seconds")
    )
    for (const r of expected) {
      const servers = spans.filter((s: SpanData) => s.kind === "server" && s.attributes["url.path"] === r.path)
      assert.strictEqual(servers.length, 1, r.path)
      const server = servers[0]!
      const children = spans
        .filter((s: SpanData) => s.parentSpanId === server.spanId)
        .sort((a, b) => (a.startMonoNs < b.startMonoNs ? -1 : 1))
      assert.deepStrictEqual(
        children.map((s) => ({ probe: s.probe, name: s.name, kind: s.kind, attributes: s.attributes,
          status: s.status })),
        r.spans.map((e) => ({
          probe: "database_sql",
          name: e.collection === undefined ? e.op : `${e.op} ${e.collection}`,
          kind: "client" as const,
          attributes: {
            "db.system.name": driver.system,
            ...driver.server(),
            "db.operation.name": e.op,
            ...(e.collection === undefined ? {} : { "db.collection.name": e.collection }),
            ...(e.text === undefined ? {} : { "db.query.text": e.text }),
            ...(e.error === undefined ? {} : { "error.type": e.error })
          },
          status: e.error === undefined ? { code: "unset" as const } : { code: "error" as const, message: e.error }
        })),
        r.path
      )
      for (const c of children) {
        assert.strictEqual(c.traceId, server.traceId)
        assert.strictEqual(c.pid, app.pid)
        assert.isTrue(server.startMonoNs <= c.startMonoNs && c.endMonoNs <= server.endMonoNs, r.path)
      }
    }
    const measurements = (yield* (yield* CapturedMeasurements).all).filter((m) =>
      m.instrument.name === "db.client.operation.duration" && m.pid === app.pid
    )
    assert.strictEqual(measurements.length, clientCount)
    const failed = measurements.filter((m) => m.attributes["error.type"] !== undefined)
    assert.deepStrictEqual(failed.map((m) => m.attributes), [{
      "db.system.name": driver.system,
      ...driver.server(),
      "db.operation.name": "SELECT",
      "db.collection.name": "missing_table",
      "error.type": driver.errorType
    }])
    for (const m of measurements) assert.isTrue(m.value > 0 && m.value < 5)
  }).pipe(Effect.provide(agent))

describe.each(builds)("database/sql on $name", (build) => {
  for (const driver of drivers) {
    it.live(`${driver.name}: a CLIENT span per call under the request's span, and its duration`, () =>
      everyRoute(build.exe(), driver), 60_000)
  }
})

// A uprobe cannot fault a page in: a type descriptor, a type name or a string constant (a statement) on a page the
// program has not touched (or that memory pressure took back) cannot be read in the kernel. The record then says where
// it is, and user space reads it through /proc/<pid>/mem. The fixture's -cold unmaps the read-only data before each
// request: without that fallback the system is other_sql and a constant statement has no text.
describe.each([builds[1]!, builds[3]!])("database/sql on $name, its read-only data paged out before each request",
  (build) => {
    for (const driver of drivers) {
      it.live(`${driver.name}: the same spans, system and error types read from the process`, () =>
        everyRoute(build.exe(), driver, ["-cold"]), 60_000)
    }
  })

describe("database/sql on a stripped build (Go 1.26.8): offsets from the shipped table", () => {
  it.live("modernc sqlite: instrumented without symbols or DWARF, with the offsets the DWARF build has", () =>
    Effect.gen(function*() {
      const driver = drivers[1]
      const app = yield* start(stripped, driver.args())
      const withDwarf = yield* start(binaries.get("1.26.8")!, driver.args())
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      const target = yield* analysis.analyzePid(app.pid)
      assert.deepStrictEqual([target.binary.hasDwarf, target.binary.stripped], [false, true])
      const offsets = (t: typeof target) => {
        const a = manager.inspect(t).find((i) => i.probe === "database_sql")!.applicability
        assert.strictEqual(a._tag, "Applies", JSON.stringify(a))
        return a._tag === "Applies" ? a.offsets : {}
      }
      const fromTable = offsets(target)
      const fromDwarf = offsets(yield* analysis.analyzePid(withDwarf.pid))
      // Every offset the table gives equals DWARF's; pgx's connector (optional, not in the table) is the only gap.
      for (const [k, v] of Object.entries(fromTable)) if (v !== undefined) assert.strictEqual(v, fromDwarf[k], k)
      assert.deepStrictEqual(
        Object.keys(fromDwarf).filter((k) => fromDwarf[k] !== undefined && fromTable[k] === undefined).sort(),
        ["pgxConnectorName"]
      )
      yield* manager.handle(TargetEvent.TargetEvent.Started({ target }))
      assert.deepStrictEqual((yield* manager.targets).map((t) => [...t.probes].sort()), [
        ["database_sql", "go_context", "nethttp_server"]
      ])
      const expected = routes(driver.placeholder, driver.errorType)
      for (const r of expected) yield* get(`http://${app.addr}${r.path}`)
      const clientCount = expected.reduce((n, r) => n + r.spans.length, 0)
      const spans = yield* (yield* CapturedSpans).take(expected.length + clientCount).pipe(Effect.timeout("15 seconds"))
      const got = expected.map((r) => {
        const server = spans.find((s) => s.kind === "server" && s.attributes["url.path"] === r.path)!
        return spans.filter((s) => s.parentSpanId === server.spanId)
          .sort((a, b) => (a.startMonoNs < b.startMonoNs ? -1 : 1))
          .map((s) => ({ name: s.name, attributes: s.attributes, status: s.status }))
      })
      // Exactly what the DWARF builds give: the same spans, attributes and statuses.
      assert.deepStrictEqual(got, expected.map((r) =>
        r.spans.map((e) => ({
          name: e.collection === undefined ? e.op : `${e.op} ${e.collection}`,
          attributes: {
            "db.system.name": driver.system,
            "db.operation.name": e.op,
            ...(e.collection === undefined ? {} : { "db.collection.name": e.collection }),
            ...(e.text === undefined ? {} : { "db.query.text": e.text }),
            ...(e.error === undefined ? {} : { "error.type": e.error })
          },
          status: e.error === undefined ? { code: "unset" } : { code: "error", message: e.error }
        }))
      ))
    }).pipe(Effect.provide(agent)), 60_000)

  it.live("a Go release the table does not cover is still refused, with the reason", () =>
    Effect.gen(function*() {
      const app = yield* start(stripped, drivers[1].args())
      const target = yield* (yield* TargetAnalysis).analyzePid(app.pid)
      const why = target.binary.fieldOffset("database/sql.DB", "connector")
      assert.strictEqual(Result.isFailure(why) ? why.failure.message : "",
        "Go 1.26.8 is not covered by the offsets table (covered: Go 1.22, 1.24–1.25, 1.27)")
      const a = (yield* Manager).inspect(target).find((i) => i.probe === "database_sql")!.applicability
      assert.deepStrictEqual(a, {
        _tag: "NotApplicable",
        probe: "database_sql",
        reason: "no offset for database/sql.DB.connector (Go 1.26.8, std 1.26.8)"
      })
    }).pipe(Effect.provide(agentWith(withoutGo126))), 60_000)
})
