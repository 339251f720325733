/**
 * The user-space cost of one ring-buffer record, per stage, against a floor: a bare DataView read of the record's
 * numeric head, then the same plus the strings by hand, then `Binary` layout decode, the `Schema` decode the Runner
 * does, and decode + span building (what the Runner does per record before the sink). No kernel, no root.
 *
 *   node_modules/.bin/node bench/decode.ts [records, default 100000]
 */
import { Exit, Schema } from "effect"
import * as NetHttpClient from "../src/instrumentations/NetHttpClient.ts"
import * as NetHttpServer from "../src/instrumentations/NetHttpServer.ts"
import * as Binary from "../src/probe/Binary.ts"
import { batchDecoder } from "../src/probe/internal/runner.ts"
import { clientRecord, serverRecord } from "../test/instrumentations/fixtures.ts"

const count = Number(process.argv[2] ?? 100_000)
const rounds = 5

// Distinct buffers (as the ring buffer hands out), so nothing is decoded from a cache-hot single record.
const servers = Array.from({ length: 1024 }, (_, i) => serverRecord({ path: `/users/${i}`, pid: 1000 + i }))
const clients = Array.from({ length: 1024 }, (_, i) => clientRecord({ path: `/users/${i}`, pid: 1000 + i }))

let sink = 0

/** ns per record: the median of `rounds` timed loops over `count` records. */
const time = (records: ReadonlyArray<Uint8Array>, f: (r: Uint8Array) => number): number => {
  const samples: Array<number> = []
  for (let round = 0; round <= rounds; round++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < count; i++) sink += f(records[i & 1023]!)
    const ns = Number(process.hrtime.bigint() - t0) / count
    if (round > 0) samples.push(ns) // round 0 warms the JIT
  }
  return samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)]!
}

const utf8 = new TextDecoder()
const off = NetHttpServer.Record.offsets

/** The floor: what any decoder must do to read the head (times, ids as numbers, pid, status). */
const bareHead = (r: Uint8Array): number => {
  const v = new DataView(r.buffer, r.byteOffset, r.byteLength)
  return Number(v.getBigUint64(0, true) - v.getBigUint64(8, true)) + v.getUint32(off["pid"]!, true) +
    v.getUint16(off["status"]!, true) + v.getUint32(16, true)
}

/** The floor with the strings a span needs, read by hand (lengths, then UTF-8 decode). */
const bareWithStrings = (r: Uint8Array): number => {
  const v = new DataView(r.buffer, r.byteOffset, r.byteLength)
  let n = bareHead(r)
  for (const [s, len] of [["method", "methodLen"], ["path", "pathLen"], ["host", "hostLen"], ["remote", "remoteLen"], [
    "pattern",
    "patternLen"
  ]] as const) {
    const l = len === "pathLen" || len === "patternLen" ? v.getUint16(off[len]!, true) : v.getUint8(off[len]!)
    n += utf8.decode(r.subarray(off[s]!, off[s]! + l)).length
  }
  return n
}

/** Everything the layout decodes for a span, by hand: the floor with strings plus the three ids as hex. */
const byHand = (r: Uint8Array): number => {
  let n = bareWithStrings(r)
  for (const [id, len] of [["traceId", 16], ["spanId", 8], ["parentSpanId", 8]] as const) {
    n += Buffer.from(r.buffer, r.byteOffset + off[id]!, len).toString("hex").length
  }
  return n
}

// The Runner's batch path: the records back to back in one buffer (as the native reader hands them over), decoded in
// place through one DataView of the whole batch, with no view object per record.
const batchOf = (records: ReadonlyArray<Uint8Array>) => {
  const data = Buffer.concat(records.map((r) => Buffer.from(r)))
  const starts = records.map((_, i) => records.slice(0, i).reduce((n, r) => n + r.length, 0))
  return { data, view: new DataView(data.buffer, data.byteOffset, data.byteLength), starts, length: records[0]!.length }
}
const serverBatch = batchOf(servers)
const serverAt = batchDecoder(Binary.schema(NetHttpServer.Record))
/** Like `time`, over the records of one batch buffer by index. */
const timeBatch = (f: (i: number) => number) => time(servers.map((_, i) => new Uint8Array([i & 0xff, i >> 8])), (r) =>
  f(r[0]! | (r[1]! << 8)))

const serverSchema = Schema.decodeUnknownExit(Binary.schema(NetHttpServer.Record))
const clientSchema = Schema.decodeUnknownExit(Binary.schema(NetHttpClient.Record))

const rows: Array<[string, number]> = [
  ["floor: DataView, numeric head only", time(servers, bareHead)],
  ["floor: DataView + 5 strings by hand", time(servers, bareWithStrings)],
  ["by hand: + 3 ids as hex", time(servers, byHand)],
  ["server: Binary layout decode", time(servers, (r) => NetHttpServer.Record.decode(r).status)],
  ["server: Schema decode (the Stream path)", time(servers, (r) => Exit.isSuccess(serverSchema(r)) ? 1 : 0)],
  ["server: in place in the batch (Runner)", timeBatch((i) => {
    const rec = serverAt(serverBatch.view, serverBatch.data, serverBatch.starts[i]!, serverBatch.length) as
      | { status: number }
      | undefined
    return rec === undefined ? 0 : rec.status
  })],
  ["server: in place + toSpan", timeBatch((i) => {
    const rec = serverAt(serverBatch.view, serverBatch.data, serverBatch.starts[i]!, serverBatch.length)
    return rec === undefined ? 0 : Object.keys(NetHttpServer.toSpan(rec as never).attributes).length
  })],
  ["server: Schema decode + toSpan", time(servers, (r) => {
    const e = serverSchema(r)
    return Exit.isSuccess(e) ? Object.keys(NetHttpServer.toSpan(e.value).attributes).length : 0
  })],
  ["client: Schema decode + toSpan", time(clients, (r) => {
    const e = clientSchema(r)
    return Exit.isSuccess(e) ? Object.keys(NetHttpClient.toSpan(e.value).attributes).length : 0
  })]
]

const floor = rows[0]![1]
console.log(`decode: ${count} records x ${rounds} rounds (median), server record ${NetHttpServer.Record.size} B, ` +
  `client record ${NetHttpClient.Record.size} B`)
console.log(`${"stage".padEnd(40)} ${"ns/record".padStart(10)} ${"x floor".padStart(8)} ${"records/s".padStart(12)}`)
for (const [name, ns] of rows) {
  const perSecond = (1e9 / ns).toFixed(0)
  const ratio = (ns / floor).toFixed(1)
  console.log(`${name.padEnd(40)} ${ns.toFixed(0).padStart(10)} ${ratio.padStart(8)} ${perSecond.padStart(12)}`)
}
if (sink === 0.5) console.log("(unreachable: keeps the loops from being optimised away)")
