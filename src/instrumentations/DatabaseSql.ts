/**
 * database/sql: one CLIENT span per statement a Go program runs through the standard library's `database/sql`
 * (Query, QueryRow, Exec — on a DB, a Conn or a Tx — and a prepared statement's Query/QueryRow/Exec), and one per
 * transaction start, commit and rollback; plus the `db.client.operation.duration` histogram. Any driver: the probe
 * hooks database/sql itself and names the database system from the driver's Go type.
 *
 * BPF side: bpf/database_sql.bpf.c (which functions and why). The statement's first 512 bytes reach user space,
 * where `internal/Sql.ts` summarises them into `db.operation.name` / `db.collection.name`; the text itself becomes
 * `db.query.text` only with the `queryText` option (it may hold literals), cut to `maxQueryText` characters. The
 * connector's DSN gives server.address/port and db.namespace (nothing else of it is kept). The record starts with the
 * HTTP probes' span head (`Http.head`: ids, parent, times), so span identity and the duration metric are built by
 * the same helpers (`Http.spanHead`, `Http.emitWithDuration`). The parent is the nearest span registered on the
 * call's context.Context chain (a server span whose r.Context() the query runs under, on any goroutine), else the
 * goroutine's active span (docs/context-propagation.md).
 *
 * Reading order: manifest -> per-target value -> record layout -> span and metric -> the probe.
 */
import {
  ATTR_DB_COLLECTION_NAME,
  ATTR_DB_NAMESPACE,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_QUERY_TEXT,
  ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ERROR_TYPE_VALUE_OTHER
} from "@opentelemetry/semantic-conventions"
import { Effect, Schema } from "effect"
import * as Binary from "../probe/Binary.ts"
import * as Manifest from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"
import type { Target as ProbeTarget } from "../probe/Target.ts"
import type { AttributeValue } from "../probe/Telemetry.ts"
import * as GoContext from "./GoContext.ts"
import { goVersions } from "./GoContext.ts"
import * as Db from "./internal/Db.ts"
import * as GoSymbols from "./internal/GoSymbols.ts"
import * as Http from "./internal/Http.ts"
import * as Sql from "./internal/Sql.ts"

// ---------------------------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------------------------

/** The hooked functions, by the entry program that probes each (all share one return program). */
export const FUNCTIONS = {
  query: "database/sql.(*DB).queryDC",
  exec: "database/sql.(*DB).execDC",
  stmtQuery: "database/sql.(*Stmt).QueryContext",
  stmtExec: "database/sql.(*Stmt).ExecContext",
  begin: "database/sql.(*DB).beginDC",
  commit: "database/sql.(*Tx).Commit",
  rollback: "database/sql.(*Tx).rollback"
} as const

const RET = "uprobe_database_sql_ret"

export const manifest = Manifest.make({
  library: { module: "std", package: "database/sql", versions: goVersions },
  goVersions,
  symbols: [
    { name: FUNCTIONS.query, entry: "uprobe_queryDC", return: RET },
    { name: FUNCTIONS.exec, entry: "uprobe_execDC", return: RET },
    { name: FUNCTIONS.stmtQuery, entry: "uprobe_stmt_query", return: RET, optional: true },
    { name: FUNCTIONS.stmtExec, entry: "uprobe_stmt_exec", return: RET, optional: true },
    { name: FUNCTIONS.begin, entry: "uprobe_beginDC", return: RET, optional: true },
    { name: FUNCTIONS.commit, entry: "uprobe_commit", return: RET, optional: true },
    { name: FUNCTIONS.rollback, entry: "uprobe_rollback", return: RET, optional: true }
  ],
  fields: {
    dbConnector: { type: "database/sql.DB", field: "connector" },
    dsnConnectorDriver: { type: "database/sql.dsnConnector", field: "driver", optional: true },
    dsnConnectorDsn: { type: "database/sql.dsnConnector", field: "dsn", optional: true },
    // pgx's own connector (sql.Open("pgx", dsn)) keeps the DSN in `name`; absent from programs without pgx.
    pgxConnectorName: { type: "github.com/jackc/pgx/v5/stdlib.driverConnector", field: "name", optional: true },
    stmtDb: { type: "database/sql.Stmt", field: "db" },
    stmtQuery: { type: "database/sql.Stmt", field: "query" },
    txDb: { type: "database/sql.Tx", field: "db" },
    txDone: { type: "database/sql.Tx", field: "done" },
    // The transaction's context, for the parent of Commit and rollback (docs/context-propagation.md).
    txCtx: { type: "database/sql.Tx", field: "ctx", optional: true },
    ...GoSymbols.typeFields
  }
})

// ---------------------------------------------------------------------------------------------------------------
// Per-target value: `struct database_sql_target`
// ---------------------------------------------------------------------------------------------------------------

/** Layout of `struct database_sql_target`. */
export const Target = Binary.struct({
  typesFromQuery: Binary.i64,
  typesFromExec: Binary.i64,
  typesFromStmtQuery: Binary.i64,
  typesFromStmtExec: Binary.i64,
  typesFromBegin: Binary.i64,
  typesFromCommit: Binary.i64,
  typesFromRollback: Binary.i64,
  typesKnown: Binary.u64n,
  ...GoSymbols.typeLayout,
  dbConnector: Binary.u64n,
  dsnConnectorDriver: Binary.u64n,
  dsnConnectorDsn: Binary.u64n,
  pgxConnectorName: Binary.u64n,
  pgxKnown: Binary.u64n,
  stmtDb: Binary.u64n,
  stmtQuery: Binary.u64n,
  txDb: Binary.u64n,
  txDone: Binary.u64n,
  txCtxData: Binary.u64n
}, { struct: "database_sql_target" })

/**
 * Where the BPF side finds `runtime.types` (the base of every type name) from each entry probe: its distance from
 * the address that probe sits at, which the program sees as its instruction pointer. Distances, not addresses, so a
 * position-independent executable works wherever it is loaded. 0 for a function the binary lacks.
 */
export const typesDistances = (target: ProbeTarget): { readonly [K in keyof typeof FUNCTIONS]: bigint } | undefined => {
  if (GoSymbols.typesAddress(target) === undefined) return undefined
  const from = (name: string): bigint => GoSymbols.typesFrom(target, name) ?? 0n
  return {
    query: from(FUNCTIONS.query),
    exec: from(FUNCTIONS.exec),
    stmtQuery: from(FUNCTIONS.stmtQuery),
    stmtExec: from(FUNCTIONS.stmtExec),
    begin: from(FUNCTIONS.begin),
    commit: from(FUNCTIONS.commit),
    rollback: from(FUNCTIONS.rollback)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Record: `struct database_sql_record` (checked against the object's BTF at load)
// ---------------------------------------------------------------------------------------------------------------

/** `database_sql_record.kind` (DATABASE_SQL_* in the C). */
export const Kind = { query: 1, exec: 2, stmtQuery: 3, stmtExec: 4, begin: 5, commit: 6, rollback: 7 } as const

/** `database_sql_record.dsn_of` (DATABASE_SQL_DSN_OF_*): which connector's field the DSN was read from. */
export const DsnOf = { none: 0, dsnConnector: 1, pgx: 2 } as const

/** How many bytes of a DSN the BPF side copies (DATABASE_SQL_DSN_CAP). */
const DSN_CAP = 128

/** How many bytes of a statement the BPF side copies (DATABASE_SQL_QUERY_CAP). */
export const QUERY_CAP = 512

/** Layout of `struct database_sql_record`. */
export const Record = Binary.struct({
  ...Http.head,
  kind: Binary.u8,
  hasError: Binary.bool,
  connectorTflag: Binary.u8,
  connectorLen: Binary.u8,
  driverTflag: Binary.u8,
  driverLen: Binary.u8,
  errorTflag: Binary.u8,
  errorLen: Binary.u8,
  /** The statement's full length; `query` holds at most QUERY_CAP bytes of it. */
  queryLen: Binary.u32,
  dsnLen: Binary.u8,
  /** Whose field `dsn` was read from: `DsnOf`. */
  dsnOf: Binary.u8,
  /** The DSN's length when its bytes are at `dsnAt` (0: its header is). */
  dsnColdLen: Binary.u8,
  _pad: Binary.pad(1),
  /** runtime.types of the process (0: unknown). */
  types: Binary.u64,
  /** The itabs of the connector, driver and error whose type the kernel could not read (else 0): `readCold`. */
  connectorAt: Binary.u64,
  driverAt: Binary.u64,
  errorAt: Binary.u64,
  /** pgx's connector's DSN field, kept when the connector's type was not read (it may be pgx's). */
  pgxDsnAt: Binary.u64,
  /** The statement's text when the kernel could not read it (a constant on a page not mapped yet), else 0. */
  queryAt: Binary.u64,
  /** The DSN when the kernel could not read it (a constant given to sql.Open), else 0. */
  dsnAt: Binary.u64,
  connector: Binary.string(64, "connectorLen", { intern: true }),
  driver: Binary.string(64, "driverLen", { intern: true }),
  error: Binary.string(64, "errorLen"),
  /** The connector's data source name (may hold a password: only host, port and database are kept from it). */
  dsn: Binary.string(DSN_CAP, "dsnLen"),
  query: Binary.string(QUERY_CAP)
}, { struct: "database_sql_record" })

/** A decoded record. */
export type Record = ReturnType<typeof Record.decode>

/**
 * The record with what the kernel could not read filled in from the process (GoSymbols): the types, the statement and
 * the DSN whose pages were not mapped yet, and pgx's DSN when the connector's type was one of them. The record itself
 * when nothing was missing, which is nearly always.
 */
export const readCold = (r: Record): Record => {
  if (r.connectorAt === 0n && r.driverAt === 0n && r.errorAt === 0n && r.queryAt === 0n && r.dsnAt === 0n) return r
  const cold = (at: bigint, name: string, tflag: number) => {
    const t = GoSymbols.coldType(r.pid, at, r.types, "itab")
    return t === undefined ? { name, tflag } : t
  }
  const connector = cold(r.connectorAt, r.connector, r.connectorTflag)
  const driver = cold(r.driverAt, r.driver, r.driverTflag)
  const error = cold(r.errorAt, r.error, r.errorTflag)
  // Read as sql.dsnConnector's; pgx's connector keeps it elsewhere.
  const pgx = r.connectorAt !== 0n && r.pgxDsnAt !== 0n && typeName(connector.name, connector.tflag) === PGX_CONNECTOR
  const dsn = pgx
    ? GoSymbols.goStringAt(r.pid, r.pgxDsnAt, DSN_CAP)
    : r.dsnAt === 0n
    ? r.dsn
    : GoSymbols.coldString(r.pid, r.dsnAt, r.dsnColdLen, DSN_CAP)
  return {
    ...r,
    connector: connector.name,
    connectorTflag: connector.tflag,
    driver: driver.name,
    driverTflag: driver.tflag,
    error: error.name,
    errorTflag: error.tflag,
    dsn,
    ...(pgx ? { dsnOf: DsnOf.pgx } : {}),
    ...(r.queryAt === 0n ? {} : { query: GoSymbols.bytesAt(r.pid, r.queryAt, Math.min(r.queryLen, QUERY_CAP)) })
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------------------------

/**
 * `queryText`: export the statement as `db.query.text` (off by default: statements may carry literal values).
 * `maxQueryText`: at most this many characters of it (1 to 512, default 256).
 */
export const Config = Schema.Struct({
  queryText: Schema.Boolean.pipe(Schema.withDecodingDefault(Effect.succeed(false))),
  maxQueryText: Schema.Int.pipe(
    Schema.check(Schema.isBetween({ minimum: 1, maximum: QUERY_CAP })),
    Schema.withDecodingDefault(Effect.succeed(256))
  )
})
export type Config = typeof Config.Type

// ---------------------------------------------------------------------------------------------------------------
// Span and metric: OpenTelemetry database semantic conventions
// ---------------------------------------------------------------------------------------------------------------

/** abi.TFlagExtraStar: the stored name has a '*' that is not part of it. */
const TFLAG_EXTRA_STAR = 1 << 1

/** A type name as Go's %T prints it (`*pgconn.PgError`), or undefined when none was read. */
export const typeName = (name: string, tflag: number): string | undefined =>
  name === "" ? undefined : (tflag & TFLAG_EXTRA_STAR) !== 0 ? name.slice(1) : name

/**
 * db.system.name by the driver's package name (a type name carries the package's name, not its path). The keys are
 * the package names of the common drivers: pgx's `stdlib` and lib/pq's `pq` (PostgreSQL), modernc's `sqlite` and
 * mattn's `sqlite3`, go-sql-driver's `mysql`, `mssql` (go-mssqldb), `godror`/`ora` (Oracle), `clickhouse`.
 */
const SYSTEMS: Readonly<globalThis.Record<string, string>> = {
  stdlib: "postgresql",
  pq: "postgresql",
  pgx: "postgresql",
  sqlite: "sqlite",
  sqlite3: "sqlite",
  mysql: "mysql",
  mssql: "microsoft.sql_server",
  godror: "oracle.db",
  ora: "oracle.db",
  clickhouse: "clickhouse"
}

/** database/sql's own connector (sql.Open of a driver without OpenConnector), and pgx's. */
const DSN_CONNECTOR = "sql.dsnConnector"
const PGX_CONNECTOR = "*stdlib.driverConnector"

/** The semconv value for a SQL database this probe cannot name. */
export const OTHER_SQL = "other_sql"

/** The database system from the connector's type, or the driver's when the connector is database/sql's own. */
export const systemOf = (r: Pick<Record, "connector" | "connectorTflag" | "driver" | "driverTflag">): string => {
  const connector = typeName(r.connector, r.connectorTflag)
  const type = connector === DSN_CONNECTOR ? typeName(r.driver, r.driverTflag) : connector
  if (type === undefined) return OTHER_SQL
  const pkg = type.replace(/^\*/, "").split(".")[0] ?? ""
  return SYSTEMS[pkg] ?? OTHER_SQL
}

/** Where a connection goes, from a data source name. */
export interface Server {
  readonly address?: string
  readonly port?: number
  readonly namespace?: string
}

const portOf = (s: string | undefined): number | undefined => {
  const n = s === undefined || !/^\d{1,5}$/.test(s) ? undefined : Number(s)
  return n !== undefined && n > 0 && n < 65536 ? n : undefined
}

/** Only what is set, so absent attributes stay absent. */
const server = (address: string | undefined, port: string | undefined, namespace: string | undefined): Server => ({
  ...(address === undefined || address === "" ? {} : { address }),
  ...(portOf(port) === undefined ? {} : { port: portOf(port)! }),
  ...(namespace === undefined || namespace === "" ? {} : { namespace })
})

/**
 * Host, port and database of a PostgreSQL DSN (URL `postgres[ql]://user:pass@host:port/db?...` or key=value
 * `host=h port=p dbname=d ...`) or a MySQL one (`user:pass@tcp(host:port)/db?...`); nothing else of it is kept (it
 * may hold a password). A Unix socket directory or a list of hosts gives no address. Empty for other systems.
 */
export const serverOf = (system: string, dsn: string): Server => {
  if (dsn === "") return {}
  const hostOnly = (h: string | undefined) => {
    const host = h?.replace(/^\[|\]$/g, "")
    return host === undefined || host.startsWith("/") || host.includes(",") ? undefined : host
  }
  if (system === "postgresql") {
    const url = /^postgres(?:ql)?:\/\/(?:[^@/]*@)?([^/?]*)(?:\/([^?]*))?/.exec(dsn)
    if (url !== null) {
      const db = url[2] === undefined ? undefined : decodeURIComponent(url[2])
      // host[:port], [v6]:port; a list of hosts (failover) names no one server.
      const hp = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(url[1]!)
      return hp === null || url[1]!.includes(",")
        ? server(undefined, undefined, db)
        : server(hostOnly(hp[1]), hp[2], db)
    }
    const kv = new Map<string, string>()
    for (const m of dsn.matchAll(/(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)/g)) kv.set(m[1]!, m[2]!.replace(/^'|'$/g, ""))
    return server(hostOnly(kv.get("host")), kv.get("port"), kv.get("dbname"))
  }
  if (system === "mysql") {
    const m = /@tcp\((\[[^\]]*\]|[^:)]*)(?::(\d+))?\)\/([^?]*)/.exec(dsn)
    return m === null ? {} : server(hostOnly(m[1]), m[2], m[3])
  }
  return {}
}

/** The operation of a record: the statement's first keyword, or the transaction call's. */
const operationOf = (r: Record): Sql.Summary => {
  switch (r.kind) {
    case Kind.begin:
      return { operation: "BEGIN" }
    case Kind.commit:
      return { operation: "COMMIT" }
    case Kind.rollback:
      return { operation: "ROLLBACK" }
    default:
      return Sql.summarize(r.query)
  }
}

/** Build the CLIENT span of one record. Span name per the conventions: "{operation} {collection}", else the system. */
export const toSpan = (record: Record, config: Config): Probe.SpanInput => {
  const r = readCold(record)
  const system = systemOf(r)
  const { operation, collection } = operationOf(r)
  const attributes: globalThis.Record<string, AttributeValue> = { [ATTR_DB_SYSTEM_NAME]: system }
  // The DSN means something only when read from database/sql's own connector or pgx's.
  const connector = typeName(r.connector, r.connectorTflag)
  const target = (connector === DSN_CONNECTOR && r.dsnOf === DsnOf.dsnConnector) ||
      (connector === PGX_CONNECTOR && r.dsnOf === DsnOf.pgx)
    ? serverOf(system, r.dsn)
    : {}
  if (target.namespace !== undefined) attributes[ATTR_DB_NAMESPACE] = target.namespace
  if (target.address !== undefined) attributes[ATTR_SERVER_ADDRESS] = target.address
  if (target.port !== undefined) attributes[ATTR_SERVER_PORT] = target.port
  if (operation !== undefined) attributes[ATTR_DB_OPERATION_NAME] = operation
  if (collection !== undefined) attributes[ATTR_DB_COLLECTION_NAME] = collection
  const statement = r.kind === Kind.query || r.kind === Kind.exec || r.kind === Kind.stmtQuery ||
    r.kind === Kind.stmtExec
  if (config.queryText && statement && r.query !== "") {
    attributes[ATTR_DB_QUERY_TEXT] = Sql.truncate(r.query, config.maxQueryText)
  }
  let status: Probe.SpanInput["status"] = Http.UNSET
  if (r.hasError) {
    const type = typeName(r.error, r.errorTflag) ?? ERROR_TYPE_VALUE_OTHER
    attributes[ATTR_ERROR_TYPE] = type
    status = { code: "error", message: type }
  }
  const name = operation === undefined ? system : collection === undefined ? operation : `${operation} ${collection}`
  return Http.headSpan(r, name, "client", attributes, status)
}

/** `db.client.operation.duration`, with the conventions' advised boundaries (shared by the database probes). */
export const operationDuration = Db.operationDuration

/** The span attributes the metric keeps (when present): never the statement's text. */
export const METRIC_KEYS = [
  ATTR_DB_SYSTEM_NAME,
  ATTR_DB_NAMESPACE,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_COLLECTION_NAME,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_ERROR_TYPE
] as const

// ---------------------------------------------------------------------------------------------------------------
// The probe
// ---------------------------------------------------------------------------------------------------------------

/** The database/sql probe. Needs GoContext (the context's or the goroutine's span is the parent). */
export const DatabaseSql = Probe.instrument({
  name: "database_sql",
  object: "database_sql",
  manifest,
  config: Config,
  reuseMaps: GoContext.sharedMaps,
  uses: [GoContext.goroutines],
  perTarget: {
    layout: Target,
    value: ({ target, offsets: o }) => {
      const d = typesDistances(target)
      return {
        typesFromQuery: d?.query ?? 0n,
        typesFromExec: d?.exec ?? 0n,
        typesFromStmtQuery: d?.stmtQuery ?? 0n,
        typesFromStmtExec: d?.stmtExec ?? 0n,
        typesFromBegin: d?.begin ?? 0n,
        typesFromCommit: d?.commit ?? 0n,
        typesFromRollback: d?.rollback ?? 0n,
        typesKnown: d === undefined ? 0 : 1,
        ...GoSymbols.typeValue(o),
        dbConnector: o.dbConnector,
        // sql.dsnConnector{dsn string; driver driver.Driver}: driver right after the string.
        dsnConnectorDriver: o.dsnConnectorDriver ?? 16,
        dsnConnectorDsn: o.dsnConnectorDsn ?? 0,
        pgxConnectorName: o.pgxConnectorName ?? 0,
        pgxKnown: o.pgxConnectorName === undefined ? 0 : 1,
        stmtDb: o.stmtDb,
        stmtQuery: o.stmtQuery,
        txDb: o.txDb,
        txDone: o.txDone,
        // Where Tx.ctx's data word is (+8): never 0, so 0 says unknown.
        txCtxData: o.txCtx === undefined ? 0 : o.txCtx + 8
      }
    }
  },
  record: Binary.schema(Record),
  instruments: { duration: operationDuration },
  signals: (r, emit, { config }) => Http.emitWithDuration(emit, "duration", toSpan(r, config), METRIC_KEYS)
})
