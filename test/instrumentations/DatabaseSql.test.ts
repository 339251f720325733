/**
 * The database/sql probe without a kernel: its layouts against the built object's BTF, the statement summariser's
 * cases, and what records turn into (`DatabaseSql.signals` on hand-made records: exact spans and measurements, the
 * driver's system, the failing call's error.type, the opt-in query text and its bound, config errors).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option } from "effect"
import * as DatabaseSql from "../../src/instrumentations/DatabaseSql.ts"
import * as Sql from "../../src/instrumentations/internal/Sql.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as Ids from "../../src/probe/Ids.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { holding } from "./HeldMemory.ts"

const TRACE = "0af7651916cd43dd8448eb211c80319c"
const SPAN = "b7ad6b7169203331"
const PARENT = "00f067aa0ba902b7"

/** A sampled Query through pgx under a local parent, unless overridden. */
const record = (over: Partial<DatabaseSql.Record> = {}): Uint8Array => {
  const query = over.query ?? "SELECT id, name FROM items WHERE id > $1"
  return DatabaseSql.Record.encode({
    startNs: 1_000_000n,
    endNs: 3_500_000n,
    traceId: Ids.fromHex(TRACE),
    spanId: Ids.fromHex(SPAN),
    parentSpanId: Ids.fromHex(PARENT),
    pid: 4242,
    flags: 1,
    parent: 1,
    status: 0,
    kind: DatabaseSql.Kind.query,
    hasError: false,
    connectorTflag: 0,
    connectorLen: 0,
    driverTflag: 0,
    driverLen: 0,
    errorTflag: 0,
    errorLen: 0,
    queryLen: query.length,
    dsnLen: 0,
    dsnOf: DatabaseSql.DsnOf.pgx,
    types: 0n,
    connectorAt: 0n,
    driverAt: 0n,
    errorAt: 0n,
    pgxDsnAt: 0n,
    queryAt: 0n,
    dsnAt: 0n,
    dsnColdLen: 0,
    connector: "*stdlib.driverConnector",
    driver: "",
    error: "",
    dsn: "",
    ...over,
    query
  })
}

const one = (bytes: Uint8Array, config?: { readonly queryText?: boolean; readonly maxQueryText?: number }) =>
  Effect.gen(function*() {
    const out = ProbeTest.capturedSignals(yield* DatabaseSql.DatabaseSql.signals(bytes, config))
    assert.strictEqual(out.spans.length, 1)
    assert.strictEqual(out.logs.length, 0)
    assert.strictEqual(out.measurements.length, 1)
    return { span: out.spans[0]!, measurement: out.measurements[0]! }
  })

describe("record layouts", () => {
  it.effect("match the C structs of database_sql.bpf.o's BTF", () =>
    Effect.gen(function*() {
      const btf = yield* BpfLive.readBtf(Probe.objectFile("database_sql")).pipe(
        Effect.map(Option.getOrThrow),
        Effect.orDie
      )
      for (const layout of [DatabaseSql.Record, DatabaseSql.Target]) {
        const struct = btf.structs[layout.struct!]!
        assert.deepStrictEqual(Binary.check(layout, struct), [], layout.struct)
        assert.strictEqual(layout.size, struct.size)
      }
    }))
})

describe("Sql.summarize", () => {
  const cases: ReadonlyArray<readonly [string, Sql.Summary]> = [
    ["SELECT id, name FROM items WHERE id > $1", { operation: "SELECT", collection: "items" }],
    ["select count(*) from public.items", { operation: "SELECT", collection: "public.items" }],
    ["SELECT (SELECT max(id) FROM b) AS m FROM \"Items\"", { operation: "SELECT", collection: "Items" }],
    ["SELECT 1", { operation: "SELECT" }],
    ["SELECT * FROM (SELECT 1) AS x", { operation: "SELECT" }],
    ["  -- comment\n/* c */ INSERT INTO items (id, name) VALUES ($1, 'x')", {
      operation: "INSERT",
      collection: "items"
    }],
    ["INSERT OR REPLACE INTO `items` VALUES (1)", { operation: "INSERT", collection: "items" }],
    ["UPDATE items SET name = 'y' WHERE id = $1", { operation: "UPDATE", collection: "items" }],
    ["UPDATE OR IGNORE items SET name = 'y'", { operation: "UPDATE", collection: "items" }],
    ["DELETE FROM items WHERE id = 1", { operation: "DELETE", collection: "items" }],
    ["CREATE TABLE items (id integer PRIMARY KEY, name text)", { operation: "CREATE", collection: "items" }],
    ["CREATE TABLE IF NOT EXISTS items (id int)", { operation: "CREATE", collection: "items" }],
    ["DROP TABLE IF EXISTS items", { operation: "DROP", collection: "items" }],
    ["CREATE UNIQUE INDEX i ON items (id)", { operation: "CREATE", collection: "i" }],
    ["CREATE FUNCTION f() RETURNS int", { operation: "CREATE" }],
    ["TRUNCATE TABLE items", { operation: "TRUNCATE", collection: "items" }],
    ["WITH x AS (SELECT id FROM a) INSERT INTO b SELECT id FROM x", { operation: "INSERT", collection: "b" }],
    ["WITH x AS (SELECT 1) SELECT * FROM x", { operation: "SELECT", collection: "x" }],
    ["BEGIN", { operation: "BEGIN" }],
    ["commit", { operation: "COMMIT" }],
    ["frobnicate the table", {}],
    ["'SELECT' FROM x", {}],
    ["", {}]
  ]
  for (const [sql, expected] of cases) {
    it(JSON.stringify(sql), () => assert.deepStrictEqual(Sql.summarize(sql), expected))
  }

  it("never returns a literal: a string or number where a name should be gives no collection", () => {
    assert.deepStrictEqual(Sql.summarize("SELECT * FROM 'secret'"), { operation: "SELECT" })
    assert.deepStrictEqual(Sql.summarize("UPDATE 42 SET a = 1"), { operation: "UPDATE" })
  })

  it("looks at the first SCAN_LIMIT characters only", () => {
    const padding = " ".repeat(Sql.SCAN_LIMIT)
    assert.deepStrictEqual(Sql.summarize(`SELECT a${padding} FROM items`), { operation: "SELECT" })
  })

  it("truncate cuts on a character boundary", () => {
    assert.strictEqual(Sql.truncate("SELECT 1", 100), "SELECT 1")
    assert.strictEqual(Sql.truncate("SELECT 1", 6), "SELECT")
    assert.strictEqual(Sql.truncate("ab\u{1F600}", 3), "ab")
  })
})

describe("spans and measurements", () => {
  it.effect("a Query through pgx: CLIENT span '{operation} {collection}' under its parent, and the duration", () =>
    Effect.gen(function*() {
      const { measurement, span } = yield* one(record())
      assert.deepStrictEqual(
        {
          name: span.name,
          kind: span.kind,
          pid: span.pid,
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId,
          parentIsRemote: span.parentIsRemote,
          startMonoNs: span.startMonoNs,
          endMonoNs: span.endMonoNs,
          attributes: span.attributes,
          status: span.status
        },
        {
          name: "SELECT items",
          kind: "client",
          pid: 4242,
          traceId: TRACE,
          spanId: SPAN,
          parentSpanId: PARENT,
          parentIsRemote: false,
          startMonoNs: 1_000_000n,
          endMonoNs: 3_500_000n,
          attributes: {
            "db.system.name": "postgresql",
            "db.operation.name": "SELECT",
            "db.collection.name": "items"
          },
          status: { code: "unset" }
        }
      )
      assert.deepStrictEqual({ ...measurement, instrument: measurement.instrument.name }, {
        pid: 4242,
        probe: "database_sql",
        instrument: "db.client.operation.duration",
        value: 0.0025,
        attributes: { "db.system.name": "postgresql", "db.operation.name": "SELECT", "db.collection.name": "items" }
      })
    }))

  it.effect("server.address, server.port and db.namespace from pgx's DSN, in the metric too; never the password", () =>
    Effect.gen(function*() {
      const { measurement, span } = yield* one(
        record({ dsn: "postgres://app:s3cret@db.internal:6543/shop?sslmode=disable" })
      )
      const expected = {
        "db.system.name": "postgresql",
        "db.namespace": "shop",
        "server.address": "db.internal",
        "server.port": 6543,
        "db.operation.name": "SELECT",
        "db.collection.name": "items"
      }
      assert.deepStrictEqual(span.attributes, expected)
      assert.deepStrictEqual(measurement.attributes, expected)
      assert.notInclude(JSON.stringify([span, measurement], (_k, v) => typeof v === "bigint" ? String(v) : v), "s3cret")
    }))

  it.effect("a DSN of a connector other than database/sql's or pgx's is not read", () =>
    Effect.gen(function*() {
      const { span } = yield* one(record({ connector: "*pq.Connector", dsn: "postgres://h:1/d" }))
      assert.deepStrictEqual(span.attributes, {
        "db.system.name": "postgresql",
        "db.operation.name": "SELECT",
        "db.collection.name": "items"
      })
    }))

  it.effect("a DSN read from another connector's field than its type's is not used", () =>
    Effect.gen(function*() {
      // pgx's connector read as database/sql's (its type was unknown then, and its DSN could not be read after).
      const { span } = yield* one(record({ dsn: "postgres://h:1/d", dsnOf: DatabaseSql.DsnOf.dsnConnector }))
      assert.deepStrictEqual(span.attributes, {
        "db.system.name": "postgresql",
        "db.operation.name": "SELECT",
        "db.collection.name": "items"
      })
    }))

  it.live("a DSN and a statement the kernel could not read (constants on pages not mapped yet): read here", () =>
    Effect.gen(function*() {
      const dsn = "postgres://app@db.internal:6543/shop"
      const sql = "SELECT id FROM orders"
      const { base, pid } = yield* holding(() => Buffer.from(dsn + sql))
      const { span } = yield* one(record({
        pid,
        dsnAt: base,
        dsnColdLen: dsn.length,
        query: "",
        queryLen: sql.length,
        queryAt: base + BigInt(dsn.length)
      }), { queryText: true })
      assert.deepStrictEqual(span.attributes, {
        "db.system.name": "postgresql",
        "db.namespace": "shop",
        "server.address": "db.internal",
        "server.port": 6543,
        "db.operation.name": "SELECT",
        "db.collection.name": "orders",
        "db.query.text": sql
      })
    }).pipe(Effect.scoped))

  it.effect("a type the kernel could not read and that cannot be read from the process either: other_sql, _OTHER", () =>
    Effect.gen(function*() {
      // No such process: the record's "where" leads nowhere, and what the kernel gave (nothing) stands.
      const { span } = yield* one(record({
        pid: 0x7ffffff0,
        connector: "",
        connectorAt: 0x1000n,
        types: 0x2000n,
        hasError: true,
        errorAt: 0x3000n
      }))
      assert.deepStrictEqual(
        [span.attributes["db.system.name"], span.attributes["error.type"]],
        ["other_sql", "_OTHER"]
      )
    }))

  it("serverOf: PostgreSQL URL and key=value forms, MySQL's tcp(), sockets and host lists give no address", () => {
    const pg = (dsn: string) => DatabaseSql.serverOf("postgresql", dsn)
    assert.deepStrictEqual(pg("postgres://u:p@127.0.0.1:5433/postgres?sslmode=disable"), {
      address: "127.0.0.1",
      port: 5433,
      namespace: "postgres"
    })
    assert.deepStrictEqual(pg("postgresql://[::1]/db%20x"), { address: "::1", namespace: "db x" })
    assert.deepStrictEqual(pg("postgres://h1:1,h2:2/db"), { namespace: "db" })
    assert.deepStrictEqual(pg("postgres:///db?host=/tmp"), { namespace: "db" })
    assert.deepStrictEqual(pg("host=db port=5432 user=u password='a b' dbname=app"), {
      address: "db",
      port: 5432,
      namespace: "app"
    })
    assert.deepStrictEqual(pg("host=/var/run/postgresql dbname=app"), { namespace: "app" })
    assert.deepStrictEqual(pg("host=a,b port=1"), { port: 1 })
    assert.deepStrictEqual(pg("port=99999"), {})
    assert.deepStrictEqual(DatabaseSql.serverOf("mysql", "u:p@tcp(10.0.0.2:3307)/shop?parseTime=true"), {
      address: "10.0.0.2",
      port: 3307,
      namespace: "shop"
    })
    assert.deepStrictEqual(DatabaseSql.serverOf("mysql", "u:p@unix(/tmp/s)/shop"), {})
    assert.deepStrictEqual(DatabaseSql.serverOf("sqlite", "/tmp/db.sqlite"), {})
    assert.deepStrictEqual(pg(""), {})
  })

  it.effect("modernc sqlite: sql.dsnConnector's driver names the system", () =>
    Effect.gen(function*() {
      const { span } = yield* one(record({ connector: "sql.dsnConnector", driver: "*sqlite.Driver" }))
      assert.strictEqual(span.attributes["db.system.name"], "sqlite")
    }))

  it("systemOf: the common drivers, the extra star, and other_sql", () => {
    const sys = (connector: string, driver = "", connectorTflag = 0) =>
      DatabaseSql.systemOf({ connector, connectorTflag, driver, driverTflag: 0 })
    assert.strictEqual(sys("*stdlib.driverConnector"), "postgresql")
    assert.strictEqual(sys("**stdlib.connector", "", 2), "postgresql")
    assert.strictEqual(sys("sql.dsnConnector", "*pq.Driver"), "postgresql")
    assert.strictEqual(sys("sql.dsnConnector", "*sqlite3.SQLiteDriver"), "sqlite")
    assert.strictEqual(sys("*mysql.connector"), "mysql")
    assert.strictEqual(sys("*mydriver.Connector"), "other_sql")
    assert.strictEqual(sys("sql.dsnConnector", ""), "other_sql")
    assert.strictEqual(sys(""), "other_sql")
  })

  it.effect("a failing query: ERROR status and error.type the error's Go type, in the metric too", () =>
    Effect.gen(function*() {
      const { measurement, span } = yield* one(
        record({ query: "SELECT id FROM missing_table", hasError: true, error: "*pgconn.PgError" })
      )
      assert.strictEqual(span.name, "SELECT missing_table")
      assert.deepStrictEqual(span.attributes, {
        "db.system.name": "postgresql",
        "db.operation.name": "SELECT",
        "db.collection.name": "missing_table",
        "error.type": "*pgconn.PgError"
      })
      assert.deepStrictEqual(span.status, { code: "error", message: "*pgconn.PgError" })
      assert.strictEqual(measurement.attributes["error.type"], "*pgconn.PgError")
    }))

  it.effect("an error whose type could not be read: error.type _OTHER", () =>
    Effect.gen(function*() {
      const { span } = yield* one(record({ hasError: true, error: "" }))
      assert.strictEqual(span.attributes["error.type"], "_OTHER")
      assert.deepStrictEqual(span.status, { code: "error", message: "_OTHER" })
    }))

  it.effect("transactions: BEGIN, COMMIT and ROLLBACK spans named by the operation (no text)", () =>
    Effect.gen(function*() {
      for (const [kind, op] of [[DatabaseSql.Kind.begin, "BEGIN"], [DatabaseSql.Kind.commit, "COMMIT"], [
        DatabaseSql.Kind.rollback,
        "ROLLBACK"
      ]] as const) {
        const { span } = yield* one(record({ kind, query: "" }), { queryText: true })
        assert.strictEqual(span.name, op)
        assert.deepStrictEqual(span.attributes, { "db.system.name": "postgresql", "db.operation.name": op })
      }
    }))

  it.effect("an unrecognised statement: named by the system, no operation", () =>
    Effect.gen(function*() {
      const { measurement, span } = yield* one(record({ kind: DatabaseSql.Kind.exec, query: "frobnicate" }))
      assert.strictEqual(span.name, "postgresql")
      assert.deepStrictEqual(span.attributes, { "db.system.name": "postgresql" })
      assert.deepStrictEqual(measurement.attributes, { "db.system.name": "postgresql" })
    }))

  it.effect("db.query.text only when opted in, cut to maxQueryText, never in the metric", () =>
    Effect.gen(function*() {
      const query = "UPDATE items SET name = 'secret' WHERE id = 1"
      const off = yield* one(record({ kind: DatabaseSql.Kind.stmtExec, query }))
      assert.strictEqual(off.span.attributes["db.query.text"], undefined)
      const on = yield* one(record({ kind: DatabaseSql.Kind.stmtExec, query }), { queryText: true })
      assert.strictEqual(on.span.attributes["db.query.text"], query)
      assert.strictEqual(on.measurement.attributes["db.query.text"], undefined)
      const cut = yield* one(record({ kind: DatabaseSql.Kind.stmtExec, query }), { queryText: true, maxQueryText: 12 })
      assert.strictEqual(cut.span.attributes["db.query.text"], "UPDATE items")
    }))

  it.effect("a maxQueryText out of bounds is a config error naming the field", () =>
    Effect.gen(function*() {
      for (const bad of [0, 513, 1.5]) {
        const exit = yield* Effect.exit(DatabaseSql.DatabaseSql.signals(record(), { maxQueryText: bad }))
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) ? Option.getOrThrow(Exit.findErrorOption(exit)) : undefined
        assert.strictEqual((error as { _tag: string })._tag, "ProbeConfigError")
        assert.match((error as { message: string }).message, /^probe database_sql: config field "maxQueryText": /)
      }
    }))
})
