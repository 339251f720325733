/**
 * kafka-go (`github.com/segmentio/kafka-go` v0.4): a PRODUCER span per `Writer.WriteMessages` call and a CONSUMER
 * span per `Reader.ReadMessage` / `Reader.FetchMessage` call, the `messaging.client.operation.duration` histogram and
 * the sent/consumed message counters, per the OpenTelemetry messaging and Kafka semantic conventions (1.37).
 *
 * BPF side: bpf/kafka_go.bpf.c. Why these functions: they are kafka-go's whole public produce and consume surface,
 * each runs on the caller's goroutine with the caller's context (so the parent is the caller's span), and the
 * consumer's returns hand it the message. `ReadMessage` calls `FetchMessage`; that inner call is not a span of its
 * own.
 *
 * The trace crosses from producer to consumer on the same host without writing a header (kernel lockdown forbids
 * bpf_probe_write_user): the producer publishes its span context under a hash of each message's topic, key and value,
 * and the consumer that receives an identical message continues that trace, the producer span as its parent (see
 * the C file's header and docs/probes/kafka-go.md for the limits).
 *
 * After a read, its CONSUMER span is the goroutine's active span until the goroutine's next read, so the program's work
 * on the message without a context span of its own continues the trace.
 *
 * `messaging.process.duration` is not recorded: kafka-go has no handler the library calls per message — the
 * application processes a message in its own code between two reads — so there is no function whose entry and
 * return bound the processing.
 *
 * Reading order: manifest -> per-target value -> record layout -> span and metrics -> the probe.
 */
import {
  ATTR_ERROR_TYPE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ERROR_TYPE_VALUE_OTHER
} from "@opentelemetry/semantic-conventions"
import {
  ATTR_MESSAGING_BATCH_MESSAGE_COUNT,
  ATTR_MESSAGING_CONSUMER_GROUP_NAME,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_DESTINATION_PARTITION_ID,
  ATTR_MESSAGING_KAFKA_MESSAGE_KEY,
  ATTR_MESSAGING_KAFKA_OFFSET,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
  MESSAGING_OPERATION_TYPE_VALUE_RECEIVE,
  MESSAGING_OPERATION_TYPE_VALUE_SEND,
  MESSAGING_SYSTEM_VALUE_KAFKA
} from "@opentelemetry/semantic-conventions/incubating"
import { Option } from "effect"
import * as Binary from "../probe/Binary.ts"
import * as Instruments from "../probe/Instruments.ts"
import * as Manifest from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"
import type { AttributeValue } from "../probe/Telemetry.ts"
import * as GoContext from "./GoContext.ts"
import { goVersions } from "./GoContext.ts"
import * as GoSymbols from "./internal/GoSymbols.ts"
import * as Http from "./internal/Http.ts"

// ---------------------------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------------------------

const PKG = "github.com/segmentio/kafka-go"

/**
 * The functions probed; every release from v0.4.1 through v0.4.51 has them with these signatures (v0.4.1 is the first
 * whose Writer has the Addr and Topic fields: v0.4.0's Writer kept them in an unexported WriterConfig).
 */
export const symbols = {
  write: `${PKG}.(*Writer).WriteMessages`,
  read: `${PKG}.(*Reader).ReadMessage`,
  fetch: `${PKG}.(*Reader).FetchMessage`
} as const

/** The supported kafka-go versions. */
export const versions = ">=0.4.1 <0.5"

export const manifest = Manifest.make({
  library: { module: PKG, versions },
  goVersions,
  // A program that only produces has no Reader (the linker drops its functions and type), one that only consumes no
  // Writer: each side is optional, and a side is probed when its functions and its fields are all there
  // (`writerOk`/`readerOk` below). A program with neither does not apply.
  symbols: [
    { name: symbols.write, entry: "uprobe_WriteMessages", return: "uprobe_WriteMessages_ret", optional: true },
    { name: symbols.read, entry: "uprobe_ReadMessage", return: "uprobe_ReadMessage_ret", optional: true },
    { name: symbols.fetch, entry: "uprobe_FetchMessage", return: "uprobe_FetchMessage_ret", optional: true }
  ],
  fields: {
    writerAddr: { type: `${PKG}.Writer`, field: "Addr", optional: true },
    writerTopic: { type: `${PKG}.Writer`, field: "Topic", optional: true },
    networkAddress: { type: `${PKG}.networkAddress`, field: "address", optional: true },
    readerConfig: { type: `${PKG}.Reader`, field: "config", optional: true },
    configBrokers: { type: `${PKG}.ReaderConfig`, field: "Brokers", optional: true },
    configGroup: { type: `${PKG}.ReaderConfig`, field: "GroupID", optional: true },
    configTopic: { type: `${PKG}.ReaderConfig`, field: "Topic", optional: true },
    msgTopic: { type: `${PKG}.Message`, field: "Topic" },
    msgPartition: { type: `${PKG}.Message`, field: "Partition" },
    msgOffset: { type: `${PKG}.Message`, field: "Offset" },
    msgKey: { type: `${PKG}.Message`, field: "Key" },
    msgValue: { type: `${PKG}.Message`, field: "Value" },
    msgTime: { type: `${PKG}.Message`, field: "Time" },
    ...GoSymbols.typeFields
  }
})

// ---------------------------------------------------------------------------------------------------------------
// Per-target value: `struct kafka_go_target`
// ---------------------------------------------------------------------------------------------------------------

/** Layout of `struct kafka_go_target`. */
export const Target = Binary.struct({
  typesFromWrite: Binary.i64,
  typesFromRead: Binary.i64,
  typesFromFetch: Binary.i64,
  typesKnown: Binary.u64n,
  ...GoSymbols.typeLayout,
  writerAddr: Binary.u64n,
  writerTopic: Binary.u64n,
  networkAddress: Binary.u64n,
  readerConfig: Binary.u64n,
  configBrokers: Binary.u64n,
  configGroup: Binary.u64n,
  configTopic: Binary.u64n,
  msgTopic: Binary.u64n,
  msgPartition: Binary.u64n,
  msgOffset: Binary.u64n,
  msgKey: Binary.u64n,
  msgValue: Binary.u64n,
  msgSize: Binary.u64n,
  writerOk: Binary.u64n,
  readerOk: Binary.u64n
}, { struct: "kafka_go_target" })

/** Bytes of a time.Time (wall, ext, loc), Message's last field: with its offset, the size of a Message. */
const TIME_SIZE = 24

// ---------------------------------------------------------------------------------------------------------------
// Record: `struct kafka_go_record` (checked against the object's BTF at load)
// ---------------------------------------------------------------------------------------------------------------

/** `kafka_go_record.op_kind`. */
export const OpKind = { send: 1, read: 2, fetch: 3 } as const

/** `kafka_go_record.parent`: none, the caller's span in the process, or the producer of the message. */
export const Parent = { none: 0, local: 1, producer: 2 } as const

/** Bytes of a message key the record carries. */
export const KEY_CAP = 32

/** How many bytes of the broker's address the BPF side copies. */
const ADDR_CAP = 64

/** Layout of `struct kafka_go_record`. */
export const Record = Binary.struct({
  startNs: Binary.u64,
  endNs: Binary.u64,
  traceId: Binary.bytes(16),
  spanId: Binary.bytes(8),
  parentSpanId: Binary.bytes(8),
  pid: Binary.u32,
  flags: Binary.u8,
  parent: Binary.u8,
  opKind: Binary.u8,
  hasError: Binary.bool,
  /** Messages given to WriteMessages; 1 for a consumer. */
  batch: Binary.u32,
  /** The received message's partition and offset; -1 when unknown. */
  partition: Binary.i32,
  offset: Binary.i64,
  /** The error's value when its type is an integer kind (kafka.Error: the protocol's error code). */
  errCode: Binary.i64,
  /** What the kernel could not read (else 0), for `readCold`: the error's itab (with runtime.types), its value. */
  types: Binary.u64,
  errAt: Binary.u64,
  errCodeAt: Binary.u64,
  /** The Writer's Addr's itab when the kernel could not tell its type; the address's string when unread. */
  addrTypeAt: Binary.u64,
  addrAt: Binary.u64,
  /** The key's full length; `key` holds its first KEY_CAP bytes. */
  keySize: Binary.u32,
  hasKey: Binary.bool,
  topicLen: Binary.u8,
  keyLen: Binary.u8,
  addrLen: Binary.u8,
  groupLen: Binary.u8,
  errTypeLen: Binary.u8,
  errKind: Binary.u8,
  errTflag: Binary.u8,
  /** The address's length when its bytes are at `addrAt` (0: its header is). */
  addrColdLen: Binary.u8,
  topic: Binary.string(64, "topicLen", { intern: true }),
  key: Binary.bytes(KEY_CAP),
  addr: Binary.string(ADDR_CAP, "addrLen", { intern: true }),
  group: Binary.string(64, "groupLen", { intern: true }),
  errType: Binary.string(64, "errTypeLen")
}, { struct: "kafka_go_record" })

/** A decoded record. */
export type Record = ReturnType<typeof Record.decode>

/**
 * The record with what the kernel could not read filled in from the process (GoSymbols): the error's type and, for
 * an integer kind, its value; the Writer's address, its type and its text; when their pages were not mapped yet. The
 * record itself when nothing was missing.
 */
export const readCold = (r: Record): Record => {
  if (r.errAt === 0n && r.errCodeAt === 0n && r.addrTypeAt === 0n && r.addrAt === 0n) return r
  const type = r.errAt === 0n ? undefined : GoSymbols.coldType(r.pid, r.errAt, r.types, "itab")
  const kind = type?.kind ?? r.errKind
  const code = r.errCodeAt !== 0n && kind === KIND_INT ? GoSymbols.int64At(r.pid, r.errCodeAt) : undefined
  // The broker's address, read (or left to read) for an Addr whose type was not told: kept for kafka.TCP's only.
  const isNetworkAddress = r.addrTypeAt === 0n ||
    GoSymbols.coldType(r.pid, r.addrTypeAt, r.types, "itab")?.name === NETWORK_ADDRESS
  const addr = !isNetworkAddress
    ? ""
    : r.addrAt === 0n
    ? r.addr
    : GoSymbols.coldString(r.pid, r.addrAt, r.addrColdLen, ADDR_CAP)
  return {
    ...r,
    ...(type === undefined ? {} : { errType: type.name, errTflag: type.tflag, errKind: type.kind }),
    ...(code === undefined ? {} : { errCode: code }),
    addr
  }
}

/** The dynamic type kafka.TCP(address) gives a Writer's Addr (NETWORK_ADDRESS in the C). */
const NETWORK_ADDRESS = "*kafka.networkAddress"

// ---------------------------------------------------------------------------------------------------------------
// Span and metrics: OpenTelemetry messaging (1.37) and Kafka semantic conventions
// ---------------------------------------------------------------------------------------------------------------

/** messaging.operation.name: "send" for a producer, Kafka's "poll" for a consumer's read. */
export const SEND = "send"
export const POLL = "poll"

/** abi.TFlagExtraStar: the stored type name has a '*' that is not part of it. */
const TFLAG_EXTRA_STAR = 1 << 1

/** internal/abi.Kind of a Go int: kafka.Error's kind. */
const KIND_INT = GoSymbols.GoKind.int

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** The key as text when it was read whole and is UTF-8; undefined otherwise (no key, longer, binary). */
const keyText = (r: Record): string | undefined => {
  if (!r.hasKey || r.keySize > KEY_CAP || r.keyLen !== r.keySize) return undefined
  try {
    return utf8.decode(r.key.subarray(0, r.keyLen))
  } catch {
    return undefined
  }
}

/** error.type and the status message of a failed call: the Go error's type; a kafka.Error's code in the message. */
const failure = (r: Record): { readonly errorType: string; readonly message?: string } | undefined => {
  if (!r.hasError) return undefined
  const type = r.errType === "" ? undefined : (r.errTflag & TFLAG_EXTRA_STAR) !== 0 ? r.errType.slice(1) : r.errType
  if (type === undefined) return { errorType: ERROR_TYPE_VALUE_OTHER }
  return r.errKind === KIND_INT ? { errorType: type, message: `${type} ${r.errCode}` } : { errorType: type }
}

/** The span of one record: PRODUCER "send <topic>" or CONSUMER "poll <topic>". */
export const toSpan = (record: Record): Probe.SpanInput => {
  const r = readCold(record)
  const send = r.opKind === OpKind.send
  const op = send ? SEND : POLL
  const attributes: globalThis.Record<string, AttributeValue> = {
    [ATTR_MESSAGING_SYSTEM]: MESSAGING_SYSTEM_VALUE_KAFKA,
    [ATTR_MESSAGING_OPERATION_NAME]: op,
    [ATTR_MESSAGING_OPERATION_TYPE]: send ? MESSAGING_OPERATION_TYPE_VALUE_SEND : MESSAGING_OPERATION_TYPE_VALUE_RECEIVE
  }
  if (r.topic !== "") attributes[ATTR_MESSAGING_DESTINATION_NAME] = r.topic
  const server = Http.splitHostPort(r.addr)
  if (server.host !== "") attributes[ATTR_SERVER_ADDRESS] = server.host
  if (server.port !== undefined) attributes[ATTR_SERVER_PORT] = server.port
  // The conventions give the batch size only for a batch of 2 or more messages.
  if (r.batch >= 2) attributes[ATTR_MESSAGING_BATCH_MESSAGE_COUNT] = r.batch
  if (!send && r.group !== "") attributes[ATTR_MESSAGING_CONSUMER_GROUP_NAME] = r.group
  if (!send && r.partition >= 0) attributes[ATTR_MESSAGING_DESTINATION_PARTITION_ID] = String(r.partition)
  if (!send && r.offset >= 0n) attributes[ATTR_MESSAGING_KAFKA_OFFSET] = Number(r.offset)
  const key = r.batch === 1 ? keyText(r) : undefined
  if (key !== undefined) attributes[ATTR_MESSAGING_KAFKA_MESSAGE_KEY] = key
  const failed = failure(r)
  if (failed !== undefined) attributes[ATTR_ERROR_TYPE] = failed.errorType
  return {
    pid: r.pid,
    traceId: r.traceId,
    spanId: r.spanId,
    // The producer is another process (or another instance): a remote parent, as a header would have made it.
    ...(r.parent === Parent.none
      ? {}
      : { parentSpanId: r.parentSpanId, parentIsRemote: r.parent === Parent.producer }),
    traceFlags: r.flags,
    startMonoNs: r.startNs,
    endMonoNs: r.endNs,
    name: r.topic === "" ? op : `${op} ${r.topic}`,
    kind: send ? "producer" : "consumer",
    attributes,
    status: failed === undefined
      ? { code: "unset" }
      : { code: "error", ...(failed.message === undefined ? {} : { message: failed.message }) }
  }
}

/** `messaging.client.operation.duration` (development in 1.37), with the brief's advised boundaries (seconds). */
export const operationDuration = Instruments.histogram("messaging.client.operation.duration", {
  unit: "s",
  description: "Duration of messaging operation initiated by a producer or consumer client.",
  boundaries: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
})

/** `messaging.client.sent.messages`: messages a producer attempted to send. */
export const sentMessages = Instruments.counter("messaging.client.sent.messages", {
  unit: "{message}",
  description: "Number of messages producer attempted to send to the broker."
})

/** `messaging.client.consumed.messages`: messages a consumer received. */
export const consumedMessages = Instruments.counter("messaging.client.consumed.messages", {
  unit: "{message}",
  description: "Number of messages that were delivered to the application."
})

/** The span attributes the metrics keep (no key, offset or batch size: cardinality). */
export const METRIC_KEYS = [
  ATTR_MESSAGING_SYSTEM,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_DESTINATION_PARTITION_ID,
  ATTR_MESSAGING_CONSUMER_GROUP_NAME,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_ERROR_TYPE
] as const

/** The counters' attributes: the duration's less messaging.operation.type (not among theirs in the conventions). */
const COUNT_KEYS = METRIC_KEYS.filter((k) => k !== ATTR_MESSAGING_OPERATION_TYPE)

const pick = (attributes: globalThis.Record<string, AttributeValue>, keys: ReadonlyArray<string>) =>
  Object.fromEntries(keys.flatMap((k) => (attributes[k] === undefined ? [] : [[k, attributes[k]]])))

// ---------------------------------------------------------------------------------------------------------------
// The probe
// ---------------------------------------------------------------------------------------------------------------

/** The kafka-go probe. Needs GoContext (the caller's span). */
export const KafkaGo = Probe.instrument({
  name: "kafka_go",
  object: "kafka_go",
  manifest,
  reuseMaps: GoContext.sharedMaps,
  uses: [GoContext.goroutines],
  perTarget: {
    layout: Target,
    value: ({ target, offsets: o }) => {
      const fns = [symbols.write, symbols.read, symbols.fetch]
      const present = fns.map((fn) => Option.isSome(target.function(fn)))
      const from = fns.map((fn) => GoSymbols.typesFrom(target, fn))
      const known = (offsets: ReadonlyArray<number | undefined>) => offsets.every((x) => x !== undefined)
      return {
        typesFromWrite: from[0] ?? 0n,
        typesFromRead: from[1] ?? 0n,
        typesFromFetch: from[2] ?? 0n,
        // Error type names need the distance from every probed function.
        typesKnown: from.every((d, i) => d !== undefined || !present[i]) ? 1 : 0,
        ...GoSymbols.typeValue(o),
        writerAddr: o.writerAddr ?? 0,
        writerTopic: o.writerTopic ?? 0,
        networkAddress: o.networkAddress ?? 0,
        readerConfig: o.readerConfig ?? 0,
        configBrokers: o.configBrokers ?? 0,
        configGroup: o.configGroup ?? 0,
        configTopic: o.configTopic ?? 0,
        writerOk: present[0] && known([o.writerAddr, o.writerTopic, o.networkAddress]) ? 1 : 0,
        readerOk: (present[1] || present[2]) && known([o.readerConfig, o.configBrokers, o.configGroup, o.configTopic]) ?
          1 :
          0,
        msgTopic: o.msgTopic,
        msgPartition: o.msgPartition,
        msgOffset: o.msgOffset,
        msgKey: o.msgKey,
        msgValue: o.msgValue,
        msgSize: o.msgTime + TIME_SIZE
      }
    }
  },
  record: Binary.schema(Record),
  instruments: { duration: operationDuration, sent: sentMessages, consumed: consumedMessages },
  signals: (r, emit) => {
    const span = toSpan(r)
    Http.emitWithDuration(emit, "duration", span, METRIC_KEYS)
    const counted = pick(span.attributes, COUNT_KEYS)
    if (r.opKind === OpKind.send) emit.metric("sent", r.batch, counted, r.pid)
    else if (!r.hasError) emit.metric("consumed", 1, counted, r.pid)
  }
})
