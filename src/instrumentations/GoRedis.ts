/**
 * go-redis v9 (`github.com/redis/go-redis/v9`): one CLIENT span per Redis command and one per pipeline, and the
 * `db.client.operation.duration` histogram, per the OpenTelemetry database and Redis semantic conventions.
 *
 * BPF side: bpf/go_redis.bpf.c. Why these functions: `(*baseClient).process(ctx, cmd)` runs once per command whatever
 * the client type (Client, Conn, a Ring's or a ClusterClient's nodes), on the caller's goroutine, around every
 * attempt of it (go-redis retries inside it: the span is the operation the caller sees). The parent is the nearest
 * span registered on its ctx's chain, else the goroutine's active span (docs/context-propagation.md); a command
 * go-redis runs inside another on the same goroutine (HELLO) is that one's child.
 * `processPipeline` / `processTxPipeline(ctx, cmds)` run once per pipeline (plain, or MULTI/EXEC) and return the first
 * failed command's error. Entry reads the command's `baseCmd.args` (args[0] is its name), the client's
 * `Options.Addr` and `Options.DB`; each RET reads the returned error's dynamic type and, for the server's error
 * replies (`proto.RedisError`, a string type), their text.
 *
 * `db.query.text` is opt-in (`queryText: true`): the arguments hold keys and values. Only then does the BPF side
 * read the arguments past the name: the first 8, each up to 32 bytes, joined and cut at `maxQueryText` characters.
 *
 * Reading order: manifest -> per-target value -> record layout -> config -> span and metric -> the probe.
 */
import {
  ATTR_DB_NAMESPACE,
  ATTR_DB_OPERATION_BATCH_SIZE,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_QUERY_TEXT,
  ATTR_DB_RESPONSE_STATUS_CODE,
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
import type { AttributeValue } from "../probe/Telemetry.ts"
import * as GoContext from "./GoContext.ts"
import { goVersions } from "./GoContext.ts"
import * as Db from "./internal/Db.ts"
import * as GoSymbols from "./internal/GoSymbols.ts"
import * as Http from "./internal/Http.ts"

// ---------------------------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------------------------

const PKG = "github.com/redis/go-redis/v9"

/** The functions probed; every v9 release has the three with these signatures (checked 9.0.5 through 9.22.0). */
export const symbols = {
  process: `${PKG}.(*baseClient).process`,
  pipeline: `${PKG}.(*baseClient).processPipeline`,
  txPipeline: `${PKG}.(*baseClient).processTxPipeline`
} as const

/** The supported go-redis versions. */
export const versions = ">=9.0.0 <10"

export const manifest = Manifest.make({
  library: { module: PKG, versions },
  goVersions,
  symbols: [
    { name: symbols.process, entry: "uprobe_process", return: "uprobe_process_ret" },
    { name: symbols.pipeline, entry: "uprobe_processPipeline", return: "uprobe_processPipeline_ret" },
    { name: symbols.txPipeline, entry: "uprobe_processTxPipeline", return: "uprobe_processTxPipeline_ret" }
  ],
  fields: {
    clientOpt: { type: `${PKG}.baseClient`, field: "opt" },
    optAddr: { type: `${PKG}.Options`, field: "Addr" },
    optDb: { type: `${PKG}.Options`, field: "DB" },
    cmdArgs: { type: `${PKG}.baseCmd`, field: "args" },
    ...GoSymbols.typeFields
  }
})

// ---------------------------------------------------------------------------------------------------------------
// Per-target value: `struct go_redis_target`
// ---------------------------------------------------------------------------------------------------------------

/** Layout of `struct go_redis_target`. */
export const Target = Binary.struct({
  typesFromProcess: Binary.i64,
  typesFromPipeline: Binary.i64,
  typesFromTxPipeline: Binary.i64,
  typesKnown: Binary.u64n,
  ...GoSymbols.typeLayout,
  clientOpt: Binary.u64n,
  optAddr: Binary.u64n,
  optDb: Binary.u64n,
  cmdArgs: Binary.u64n
}, { struct: "go_redis_target" })


// ---------------------------------------------------------------------------------------------------------------
// Record: `struct go_redis_record` (checked against the object's BTF at load)
// ---------------------------------------------------------------------------------------------------------------

/** Arguments the BPF side reads (GO_REDIS_ARGS) and bytes of each (GO_REDIS_ARG_CAP). */
export const ARGS = 8
export const ARG_CAP = 32

/** `struct go_redis_arg`: one argument's kind (internal/abi.Kind), first bytes and full size. */
export const Arg = Binary.struct({
  size: Binary.u32,
  kind: Binary.u8,
  len: Binary.u8,
  _pad: Binary.pad(2),
  /** What the kernel could not read (a constant): a string's bytes, a number's; else 0. */
  at: Binary.u64,
  data: Binary.bytes(ARG_CAP)
}, { struct: "go_redis_arg" })
export type Arg = ReturnType<typeof Arg.decode>

/** `go_redis_record.op_kind`. */
export const OpKind = { command: 1, pipeline: 2, txPipeline: 3 } as const

/** How many bytes of the op and of the error's message the BPF side copies. */
const OP_CAP = 32
const ERR_MSG_CAP = 128

/** Layout of `struct go_redis_record`. */
export const Record = Binary.struct({
  startNs: Binary.u64,
  endNs: Binary.u64,
  traceId: Binary.bytes(16),
  spanId: Binary.bytes(8),
  parentSpanId: Binary.bytes(8),
  pid: Binary.u32,
  flags: Binary.u8,
  /** 1 when the operation has a parent (its context's or the goroutine's span), else 0 (as Http.Parent). */
  parent: Binary.u8,
  opKind: Binary.u8,
  hasError: Binary.bool,
  /** Commands in a pipeline; 0 for one command. */
  batchSize: Binary.u32,
  /** The command's arguments, its name included. */
  argCount: Binary.u32,
  db: Binary.i64,
  opLen: Binary.u8,
  addrLen: Binary.u8,
  errTypeLen: Binary.u8,
  errKind: Binary.u8,
  errTflag: Binary.u8,
  errMsgLen: Binary.u8,
  /** The message's length when its bytes are at `errMsgAt` (0: its header is). */
  errMsgColdLen: Binary.u8,
  _pad: Binary.pad(1),
  /** runtime.types of the process (0: unknown). */
  types: Binary.u64,
  /** What the kernel could not read (else 0), for `readCold`: the error's itab, its message, the command's name. */
  errAt: Binary.u64,
  errMsgAt: Binary.u64,
  opAt: Binary.u64,
  op: Binary.string(OP_CAP, "opLen", { intern: true }),
  addr: Binary.string(64, "addrLen", { intern: true }),
  errType: Binary.string(64, "errTypeLen"),
  errMsg: Binary.string(ERR_MSG_CAP, "errMsgLen"),
  args: Binary.bytes(ARGS * Arg.size)
}, { struct: "go_redis_record" })

/** A decoded record. */
export type Record = ReturnType<typeof Record.decode>

/**
 * The record with what the kernel could not read filled in from the process (GoSymbols): the error's type and message,
 * the command's name, when their pages were not mapped yet. The record itself when nothing was missing.
 */
export const readCold = (r: Record): Record => {
  if (r.errAt === 0n && r.errMsgAt === 0n && r.opAt === 0n) return r
  const type = r.errAt === 0n ? undefined : GoSymbols.coldType(r.pid, r.errAt, r.types, "itab")
  const kind = type?.kind ?? r.errKind
  const message = r.errMsgAt !== 0n && kind === Kind.string
    ? GoSymbols.coldString(r.pid, r.errMsgAt, r.errMsgColdLen, ERR_MSG_CAP)
    : r.errMsg
  const op = r.opAt === 0n ? undefined : GoSymbols.coldStringValue(r.pid, r.opAt, r.types, OP_CAP)
  return {
    ...r,
    ...(type === undefined ? {} : { errType: type.name, errTflag: type.tflag, errKind: type.kind }),
    // A message read in the kernel for a type it could not read, which is not a string after all, means nothing.
    errMsg: kind === Kind.string ? message : "",
    ...(op === undefined ? {} : { op })
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------------------------

/** The most characters of db.query.text: 8 arguments of 32 bytes and their separators. */
export const QUERY_CAP = ARGS * (ARG_CAP + 1)

/**
 * `queryText`: export the command and its arguments as `db.query.text` (off by default: they hold keys and values).
 * `maxQueryText`: at most this many characters of it (1 to 264, default 256).
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
// Span and metric: OpenTelemetry database (stable) and Redis semantic conventions
// ---------------------------------------------------------------------------------------------------------------

/** The span name and db.operation.name of a pipeline: go-redis's own names for the two kinds. */
export const PIPELINE = "PIPELINE"
export const TX_PIPELINE = "MULTI"

/** abi.TFlagExtraStar: the stored type name has a '*' that is not part of it. */
const TFLAG_EXTRA_STAR = 1 << 1

/** The type of the server's error replies (and of redis.Nil, "redis: nil"). */
const REDIS_ERROR = "proto.RedisError"

/** internal/abi.Kind, for the argument formatter. */
const Kind = GoSymbols.GoKind

const text = new TextDecoder()

/** One argument as redis-cli would show it (numbers in decimal); `?` for a value whose bytes were not read. */
/** An argument whose bytes the kernel could not read (`at`), read from process `pid`. */
export const readColdArg = (pid: number, a: Arg): Arg => {
  if (a.at === 0n) return a
  const string = a.kind === Kind.string || a.kind === Kind.slice
  const bytes = GoSymbols.rawAt(pid, a.at, string ? Math.min(a.size, ARG_CAP) : 8)
  if (bytes === undefined) return a
  const data = new Uint8Array(ARG_CAP)
  data.set(bytes)
  return { ...a, data, len: bytes.length }
}

export const formatArg = (a: Arg): string => {
  const v = new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength)
  switch (a.kind) {
    case Kind.string:
    case Kind.slice: {
      const s = text.decode(a.data.subarray(0, a.len))
      return a.size > a.len ? `${s}...` : s
    }
    case Kind.bool:
      return v.getUint8(0) !== 0 ? "1" : "0"
    case Kind.int:
    case Kind.int64:
      return String(v.getBigInt64(0, true))
    case Kind.int8:
      return String(v.getInt8(0))
    case Kind.int16:
      return String(v.getInt16(0, true))
    case Kind.int32:
      return String(v.getInt32(0, true))
    case Kind.uint:
    case Kind.uint64:
    case Kind.uintptr:
      return String(v.getBigUint64(0, true))
    case Kind.uint8:
      return String(v.getUint8(0))
    case Kind.uint16:
      return String(v.getUint16(0, true))
    case Kind.uint32:
      return String(v.getUint32(0, true))
    case Kind.float32:
      return String(v.getFloat32(0, true))
    case Kind.float64:
      return String(v.getFloat64(0, true))
    default:
      return "?"
  }
}

/** The command's arguments that were read, decoded (those the kernel could not read, read from the process). */
export const args = (r: Record): ReadonlyArray<Arg> =>
  Array.from(
    { length: Math.min(ARGS, r.argCount) },
    (_, i) => readColdArg(r.pid, Arg.decode(r.args.subarray(i * Arg.size)))
  )

/** db.query.text: the command as redis-cli would take it, its first 8 arguments, cut at `max` characters. */
export const queryText = (r: Record, max: number): string => {
  const shown = args(r).map(formatArg)
  const more = r.argCount > ARGS ? " ..." : ""
  const full = `${[r.op.toUpperCase(), ...shown.slice(1)].join(" ")}${more}`
  return full.length > max ? full.slice(0, max) : full
}

/** "host:port" of Options.Addr; a unix socket path (no port) is the address alone. */
const splitAddr = (addr: string): { readonly host: string; readonly port?: number | undefined } => {
  if (addr.startsWith("/")) return { host: addr, port: undefined }
  return Http.splitHostPort(addr)
}

/** How the operation failed, per the conventions: the server's error prefix, else the Go error's type. */
const failure = (r: Record): {
  readonly statusCode?: string
  readonly errorType: string
  readonly message?: string
} | undefined => {
  if (!r.hasError) return undefined
  const type = r.errType === "" ? undefined : (r.errTflag & TFLAG_EXTRA_STAR) !== 0 ? r.errType.slice(1) : r.errType
  if (type === REDIS_ERROR) {
    // redis.Nil is a reply ("no such key"), not a failure: go-redis returns it as an error for a missing key.
    if (r.errMsg === "redis: nil") return undefined
    const prefix = r.errMsg.split(" ", 1)[0] ?? ""
    return prefix !== "" && /^[A-Z]+$/.test(prefix)
      ? { statusCode: prefix, errorType: prefix, message: r.errMsg }
      : { errorType: type, message: r.errMsg }
  }
  return { errorType: type ?? ERROR_TYPE_VALUE_OTHER }
}

/** Build the CLIENT span of one record. */
export const toSpan = (record: Record, config: Config = { queryText: false, maxQueryText: 256 }): Probe.SpanInput => {
  const r = readCold(record)
  const command = r.opKind === OpKind.command
  const op = command ? r.op.toUpperCase() : r.opKind === OpKind.txPipeline ? TX_PIPELINE : PIPELINE
  const server = splitAddr(r.addr)
  const attributes: globalThis.Record<string, AttributeValue> = {
    [ATTR_DB_SYSTEM_NAME]: "redis",
    [ATTR_DB_OPERATION_NAME]: op,
    [ATTR_DB_NAMESPACE]: String(r.db)
  }
  if (server.host !== "") attributes[ATTR_SERVER_ADDRESS] = server.host
  if (server.port !== undefined) attributes[ATTR_SERVER_PORT] = server.port
  // The conventions give the batch size only for a batch of 2 or more operations.
  if (!command && r.batchSize >= 2) attributes[ATTR_DB_OPERATION_BATCH_SIZE] = r.batchSize
  if (command && config.queryText) attributes[ATTR_DB_QUERY_TEXT] = queryText(r, config.maxQueryText)
  const failed = failure(r)
  if (failed?.statusCode !== undefined) attributes[ATTR_DB_RESPONSE_STATUS_CODE] = failed.statusCode
  if (failed !== undefined) attributes[ATTR_ERROR_TYPE] = failed.errorType
  // Span name: "{operation} {target}", the target being server.address:server.port (never db.namespace for Redis).
  const target = server.host === "" ? "" : server.port === undefined ? server.host : `${server.host}:${server.port}`
  return Http.headSpan(
    r,
    target === "" ? op : `${op} ${target}`,
    "client",
    attributes,
    failed === undefined
      ? Http.UNSET
      : { code: "error", ...(failed.message === undefined ? {} : { message: failed.message }) },
    r.parent === 0 ? Http.Parent.none : Http.Parent.local
  )
}

/** `db.client.operation.duration`, stable in the database conventions (shared by the database probes). */
export const operationDuration = Db.operationDuration

/** The span attributes the metric keeps: no query text, no namespace (cardinality). */
export const METRIC_KEYS = [
  ATTR_DB_SYSTEM_NAME,
  ATTR_DB_OPERATION_NAME,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_ERROR_TYPE
] as const

// ---------------------------------------------------------------------------------------------------------------
// The probe
// ---------------------------------------------------------------------------------------------------------------

/** The go-redis v9 probe. Needs GoContext (the context's or the goroutine's span is the parent). */
export const GoRedis = Probe.instrument({
  name: "go_redis",
  object: "go_redis",
  manifest,
  reuseMaps: GoContext.sharedMaps,
  uses: [GoContext.goroutines],
  config: Config,
  constants: ({ config }) => ({ go_redis_query_text: config.queryText ? 1n : 0n }),
  perTarget: {
    layout: Target,
    value: ({ target, offsets: o }) => {
      const from = [symbols.process, symbols.pipeline, symbols.txPipeline].map((fn) => GoSymbols.typesFrom(target, fn))
      const known = from.every((d) => d !== undefined)
      return {
        typesFromProcess: from[0] ?? 0n,
        typesFromPipeline: from[1] ?? 0n,
        typesFromTxPipeline: from[2] ?? 0n,
        typesKnown: known ? 1 : 0,
        ...GoSymbols.typeValue(o),
        clientOpt: o.clientOpt,
        optAddr: o.optAddr,
        optDb: o.optDb,
        cmdArgs: o.cmdArgs
      }
    }
  },
  record: Binary.schema(Record),
  instruments: { duration: operationDuration },
  signals: (r, emit, ctx) => Http.emitWithDuration(emit, "duration", toSpan(r, ctx.config), METRIC_KEYS)
})
