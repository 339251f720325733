/**
 * The direct OTLP encoder (src/telemetry/internal/otlp/traces.ts) against the official protos and the OpenTelemetry
 * JS SDK: what it writes decodes, with opentelemetry-proto's own definitions, to exactly what the SDK's serializers
 * write for the same spans (built by readableSpan.ts as the SDK exporter path does), field by field; and its OTLP/JSON
 * says the same as its protobuf and as the SDK's JSON.
 */
import { assert, describe, it } from "@effect/vitest"
import { JsonTraceSerializer, ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer"
import { resourceFromAttributes } from "@opentelemetry/resources"
import * as Ids from "../../src/probe/Ids.ts"
import type { SpanData } from "../../src/probe/Telemetry.ts"
import { makeTraceEncoder, type OtlpSpan } from "../../src/telemetry/internal/otlp/traces.ts"
import { toReadableSpan } from "../../src/telemetry/internal/readableSpan.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import { comparableJson, decodeRequest, flatSpans } from "./otlp-proto/decode.ts"

const OFFSET = 1_700_000_000_000_000_000n
const VERSION = ProcessResources.version
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

const api = resourceFromAttributes({
  "service.name": "users-api",
  "process.pid": 4242,
  "process.executable.path": "/srv/bin/users-api",
  "process.command_args": ["/srv/bin/users-api", "-port", "8080"],
  "telemetry.distro.version": VERSION
})
const worker = resourceFromAttributes({ "service.name": "wörker ✓", "process.pid": 777 })
const empty = resourceFromAttributes({})

const base: SpanData = {
  pid: 4242,
  probe: "net/http.server",
  traceId: TRACE,
  spanId: "00f067aa0ba902b7",
  traceFlags: 1,
  name: "GET /users/{id}",
  kind: "server",
  startMonoNs: 1_000_000_123n,
  endMonoNs: 1_012_345_678n,
  attributes: {},
  status: { code: "unset" }
}

/** Spans covering every field and value kind the encoder handles. */
const spans: ReadonlyArray<readonly [SpanData, typeof api]> = [
  // Remote parent, every attribute type.
  [{
    ...base,
    parentSpanId: "b7ad6b7169203331",
    parentIsRemote: true,
    attributes: {
      "http.request.method": "GET",
      "http.response.status_code": 200,
      "negative": -42,
      "zero": 0,
      "big": 2 ** 60,
      "min": -(2 ** 63),
      "beyond.int64": 2 ** 64,
      "ratio": 0.5,
      "tiny": 5e-324,
      "cached": false,
      "ok": true,
      "tags": ["a", "b", ""],
      "codes": [200, 404, 1.5],
      "none": [],
      "empty": "",
      "ключ ✓": "値 🚀 ok",
      "long": "x".repeat(300)
    }
  }, api],
  // Local parent, error status with a message, an event with attributes and one without.
  [{
    ...base,
    probe: "database/sql",
    spanId: "1111111111111111",
    parentSpanId: "00f067aa0ba902b7",
    parentIsRemote: false,
    name: "SELECT users",
    kind: "client",
    startMonoNs: 1_001_000_000n,
    endMonoNs: 1_004_000_001n,
    attributes: { "db.system.name": "postgresql" },
    status: { code: "error", message: "connection reset ✗" },
    events: [
      { name: "exception", timeMonoNs: 1_003_000_000n, attributes: { "exception.message": "EOF", "n": 3 } },
      { name: "retry", timeMonoNs: 1_003_500_000n, attributes: {} }
    ],
    // What the probe could not keep (otel_trace's bounds): OTLP's dropped counts.
    droppedAttributesCount: 2,
    droppedEventsCount: 5
  }, api],
  // Root span of another process, ok status, unicode name, flags 0.
  [{
    ...base,
    pid: 777,
    probe: "kafka.producer",
    traceId: "0af7651916cd43dd8448eb211c80319c",
    spanId: "2222222222222222",
    traceFlags: 0,
    name: "publish 注文 📦",
    kind: "producer",
    startMonoNs: 5_000_000_000n,
    endMonoNs: 5_000_000_999n,
    status: { code: "ok" }
  }, worker],
  // Back to the first process, its first probe again: grouped with the first span.
  [{
    ...base,
    spanId: "3333333333333333",
    parentSpanId: "00f067aa0ba902b7",
    name: "internal",
    kind: "internal",
    attributes: { "payload": "p".repeat(20_000) }
  }, api],
  // Consumer, end before start (clamped to a zero-length span), on a resource without attributes.
  [{
    ...base,
    pid: 1,
    probe: "kafka.consumer",
    spanId: "4444444444444444",
    parentSpanId: "",
    kind: "consumer",
    startMonoNs: 9_000_000_000n,
    endMonoNs: 8_000_000_000n
  }, empty],
  // A third probe of the first process.
  [{ ...base, probe: "net/http.client", spanId: "5555555555555555", traceFlags: 3, kind: "client" }, api]
]

const items: ReadonlyArray<OtlpSpan> = spans.map(([span, resource]) => ({
  span,
  probe: span.probe,
  resource,
  offsetNs: OFFSET
}))
const readable = spans.map(([span, resource]) => toReadableSpan(span, resource, VERSION, (ns) => ns + OFFSET))

/** Decoded spans in the order of the input's span ids (they ascend). */
const bySpanId = (list: ReturnType<typeof flatSpans>) =>
  [...list].sort((a, b) => a.span["spanId"] < b.span["spanId"] ? -1 : 1)


/** A decoded protobuf request in the OTLP/JSON shape (ids hex instead of base64). */
const protobufAsJson = (bytes: Uint8Array) => {
  const request = decodeRequest(bytes)
  const idsToHex = (v: unknown, key = ""): unknown => {
    if (["traceId", "spanId", "parentSpanId"].includes(key)) return Buffer.from(String(v), "base64").toString("hex")
    if (Array.isArray(v)) return v.map((x) => idsToHex(x))
    if (typeof v === "object" && v !== null) {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, idsToHex(x, k)]))
    }
    return v
  }
  return comparableJson(idsToHex(request))
}

describe("direct OTLP encoding", () => {
  const encoder = makeTraceEncoder(VERSION)

  it("protobuf decodes with the official protos to exactly what the SDK's serializer writes", () => {
    const mine = flatSpans(encoder.protobuf(items))
    const sdk = flatSpans(ProtobufTraceSerializer.serializeRequest(readable)!)
    assert.strictEqual(mine.length, spans.length)
    // Same spans; the order differs only by grouping: the SDK groups its protobuf by scope object, and
    // readableSpan.ts makes one per span, so it sends a ScopeSpans per span in input order.
    assert.deepStrictEqual(bySpanId(mine), bySpanId(sdk))
  })

  it("protobuf carries the ids, times, flags, kinds, status and scope as the probes gave them", () => {
    const got = bySpanId(flatSpans(encoder.protobuf(items)))
    const [remote, local, root, , clamped, client] = got.map((g) => g.span)
    assert.strictEqual(remote!["traceId"], TRACE)
    assert.strictEqual(remote!["spanId"], "00f067aa0ba902b7")
    assert.strictEqual(remote!["parentSpanId"], "b7ad6b7169203331")
    assert.strictEqual(remote!["startTimeUnixNano"], String(1_000_000_123n + OFFSET))
    assert.strictEqual(remote!["endTimeUnixNano"], String(1_012_345_678n + OFFSET))
    // Low byte: W3C flags; 0x100: is-remote known; 0x200: the parent is remote.
    assert.strictEqual(remote!["flags"], 0x301)
    assert.strictEqual(local!["flags"], 0x101)
    assert.strictEqual(root!["flags"], 0x100)
    assert.strictEqual(root!["parentSpanId"], "")
    assert.strictEqual(client!["flags"], 0x103)
    assert.deepStrictEqual(got.map((g) => g.span["kind"]), [2, 3, 4, 1, 5, 3])
    assert.deepStrictEqual(local!["status"], { message: "connection reset ✗", code: 2 })
    assert.deepStrictEqual(root!["status"], { message: "", code: 1 })
    assert.strictEqual(root!["name"], "publish 注文 📦")
    assert.strictEqual(clamped!["endTimeUnixNano"], clamped!["startTimeUnixNano"])
    assert.deepStrictEqual([local!["droppedAttributesCount"], local!["droppedEventsCount"]], [2, 5])
    assert.deepStrictEqual([root!["droppedAttributesCount"], root!["droppedEventsCount"]], [0, 0])
    assert.deepStrictEqual(local!["events"].map((e: any) => [e.name, e.timeUnixNano, e.attributes.length]), [
      ["exception", String(1_003_000_000n + OFFSET), 2],
      ["retry", String(1_003_500_000n + OFFSET), 0]
    ])
    const attribute = (name: string) => remote!["attributes"].find((a: any) => a.key === name)?.value
    assert.deepStrictEqual(attribute("big"), { intValue: String(2n ** 60n) })
    assert.deepStrictEqual(attribute("min"), { intValue: String(-(2n ** 63n)) })
    assert.deepStrictEqual(attribute("beyond.int64"), { doubleValue: 2 ** 64 })
    assert.deepStrictEqual(attribute("ключ ✓"), { stringValue: "値 🚀 ok" })
    assert.deepStrictEqual(attribute("codes"), {
      arrayValue: { values: [{ intValue: "200" }, { intValue: "404" }, { doubleValue: 1.5 }] }
    })
    assert.deepStrictEqual(got[0]!.scope, {
      name: "probescope/net/http.server",
      version: VERSION,
      attributes: [],
      droppedAttributesCount: 0
    })
  })

  it("ids given as bytes (as probes copy them from records) encode to the same request as in hex, both encodings", () => {
    const asBytes = items.map((item): OtlpSpan => {
      const { parentSpanId, spanId, traceId, ...rest } = item.span
      return {
        ...item,
        span: {
          ...rest,
          traceId: Ids.fromHex(Ids.hex(traceId)),
          spanId: Ids.fromHex(Ids.hex(spanId)),
          ...(parentSpanId === undefined ? {} : { parentSpanId: Ids.fromHex(Ids.hex(parentSpanId)) })
        }
      }
    })
    assert.isTrue(asBytes.some((i) => i.span.parentSpanId instanceof Uint8Array && i.span.parentSpanId.length === 8))
    assert.isTrue(encoder.protobuf(asBytes).equals(encoder.protobuf(items)))
    assert.strictEqual(encoder.json(asBytes).toString(), encoder.json(items).toString())
  })

  it("groups by resource object, then by probe, in order of first appearance", () => {
    const request = decodeRequest(encoder.protobuf(items))
    const layout = request["resourceSpans"].map((rs: any) => [
      rs.resource.attributes.find((a: any) => a.key === "process.pid")?.value.intValue ?? "-",
      rs.scopeSpans.map((ss: any) => [ss.scope.name, ss.spans.map((s: any) => s.name)])
    ])
    assert.deepStrictEqual(layout, [
      ["4242", [
        ["probescope/net/http.server", ["GET /users/{id}", "internal"]],
        ["probescope/database/sql", ["SELECT users"]],
        ["probescope/net/http.client", ["GET /users/{id}"]]
      ]],
      ["777", [["probescope/kafka.producer", ["publish 注文 📦"]]]],
      ["-", [["probescope/kafka.consumer", ["GET /users/{id}"]]]]
    ])
    // Two resource objects with equal attributes stay apart, as the SDK keeps them (grouping is by identity).
    const twin = resourceFromAttributes({ "service.name": "wörker ✓", "process.pid": 777 })
    const two = decodeRequest(encoder.protobuf([items[2]!, { ...items[2]!, resource: twin }]))
    assert.strictEqual(two["resourceSpans"].length, 2)
  })

  it("many resources and scopes in one request, in a batch of 512", () => {
    const resources = Array.from({ length: 7 }, (_, i) => resourceFromAttributes({ "process.pid": i }))
    const batch: Array<OtlpSpan> = []
    for (let i = 0; i < 512; i++) {
      const [span] = spans[i % spans.length]!
      batch.push({
        // The probe beside the span, as the Runner's batch path gives it.
        span: { ...span, spanId: (i + 1).toString(16).padStart(16, "0") },
        probe: `probe-${i % 5}`,
        resource: resources[i % 7]!,
        offsetNs: OFFSET
      })
    }
    const sdk = batch.map((b) =>
      toReadableSpan({ ...b.span, probe: b.probe }, b.resource as typeof api, VERSION, (ns) => ns + OFFSET)
    )
    const mine = encoder.protobuf(batch)
    assert.deepStrictEqual(
      bySpanId(flatSpans(mine)),
      bySpanId(flatSpans(ProtobufTraceSerializer.serializeRequest(sdk)!))
    )
    assert.strictEqual(decodeRequest(mine)["resourceSpans"].length, 7)
    for (const rs of decodeRequest(mine)["resourceSpans"]) assert.strictEqual(rs.scopeSpans.length, 5)
  })

  it("repeated and never-repeating attribute values (kept encoded, then no longer) encode as the SDK's", () => {
    // 40 distinct values of one name (more than are kept per name), a value too long to keep, repeated ones.
    const batch = Array.from({ length: 120 }, (_, i): OtlpSpan => ({
      span: {
        ...base,
        spanId: (i + 1).toString(16).padStart(16, "0"),
        attributes: {
          "url.path": `/users/${i % 40}`,
          "http.request.method": i % 2 === 0 ? "GET" : "POST",
          "http.response.status_code": [200, 404][i % 2]!,
          "server.port": 8080,
          "ok": i % 3 === 0,
          "body": "b".repeat(200),
          "weight": i % 2 === 0 ? 0.25 : 1
        },
        events: [{ name: "e", timeMonoNs: 1n, attributes: { "url.path": `/users/${i % 40}`, "k": "v" } }]
      },
      probe: base.probe,
      resource: api,
      offsetNs: OFFSET
    }))
    const sdk = batch.map((b) => toReadableSpan({ ...b.span, probe: b.probe }, api, VERSION, (ns) => ns + OFFSET))
    for (let round = 0; round < 2; round++) {
      assert.deepStrictEqual(
        flatSpans(encoder.protobuf(batch)),
        flatSpans(ProtobufTraceSerializer.serializeRequest(sdk)!)
      )
      assert.deepStrictEqual(
        comparableJson(JSON.parse(encoder.json(batch).toString())),
        comparableJson(JSON.parse(Buffer.from(JsonTraceSerializer.serializeRequest(sdk)!).toString()))
      )
    }
  })

  it("an attribute is copied from the previous span's only when its position, name and value all match", () => {
    // Each span differs from the one before it at some position in one way: the name, the value, its kind (the
    // number 1 then the string "1"), an array where a scalar was (arrays are never copied: one may have changed),
    // -0 after 0, more attributes than positions are remembered, and a name with too many values to keep.
    const many = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`k${i}`, i % 3 === 0 ? "v" : i]))
    const shared = ["x"]
    const attributeSets: ReadonlyArray<SpanData["attributes"]> = [
      { a: "x", b: 1, c: true },
      { a: "x", b: 1, c: true },
      { a: "x", b: "1", c: true },
      { b: "1", a: "x", c: true },
      { b: "1", a: "x", c: false },
      { a: "x", b: shared, c: false },
      { a: "x", b: shared, c: false },
      { a: "x", b: 0, c: 1.5 },
      { a: "x", b: -0, c: 1.5 },
      { a: "x", b: 0.5, c: 1.25 },
      { d: "x", b: 0.5, c: 1.25 },
      many,
      { ...many, k29: "w" },
      { ...many, k1: "v", k25: "w" },
      ...Array.from({ length: 40 }, (_, i) => ({ a: `/users/${i}`, b: 1, c: true })),
      ...Array.from({ length: 4 }, (_, i) => ({ a: `/users/${i % 2}`, b: 1, c: true }))
    ]
    const batch = attributeSets.map((attributes, i): OtlpSpan => ({
      span: { ...base, spanId: (i + 1).toString(16).padStart(16, "0"), attributes },
      probe: base.probe,
      resource: api,
      offsetNs: OFFSET
    }))
    const sdk = batch.map((b) => toReadableSpan({ ...b.span, probe: b.probe }, api, VERSION, (ns) => ns + OFFSET))
    // Twice: the second time every position starts from what the batch's last span left.
    for (let round = 0; round < 2; round++) {
      const mine = flatSpans(encoder.protobuf(batch))
      assert.deepStrictEqual(mine, flatSpans(ProtobufTraceSerializer.serializeRequest(sdk)!))
      assert.deepStrictEqual(
        mine[2]!.span["attributes"].map((a: any) => [a.key, a.value]),
        [["a", { stringValue: "x" }], ["b", { stringValue: "1" }], ["c", { boolValue: true }]]
      )
      assert.deepStrictEqual(
        comparableJson(JSON.parse(encoder.json(batch).toString())),
        comparableJson(JSON.parse(Buffer.from(JsonTraceSerializer.serializeRequest(sdk)!).toString()))
      )
    }
  })

  it("an empty batch is an empty request, in both encodings", () => {
    assert.strictEqual(encoder.protobuf([]).length, 0)
    assert.strictEqual(ProtobufTraceSerializer.serializeRequest([])!.length, 0)
    assert.deepStrictEqual(JSON.parse(encoder.json([]).toString()), { resourceSpans: [] })
    assert.deepStrictEqual(decodeRequest(encoder.protobuf([])), { resourceSpans: [] })
  })

  it("each request is its own copy: the reused buffer does not change a request already returned", () => {
    const first = encoder.protobuf(items)
    const copy = Buffer.from(first)
    encoder.protobuf(items.slice(2).reverse())
    assert.isTrue(first.equals(copy))
    assert.isTrue(encoder.protobuf(items).equals(copy))
  })

  it("OTLP/JSON says what the protobuf says, exactly (int64 beyond 2^53 included)", () => {
    const json = JSON.parse(encoder.json(items).toString("utf8"))
    assert.deepStrictEqual(comparableJson(json), protobufAsJson(encoder.protobuf(items)))
  })

  it("OTLP/JSON follows the spec's mapping: hex ids, int64 and times as strings, enums as numbers", () => {
    const json = JSON.parse(encoder.json(items.slice(0, 2)).toString("utf8"))
    const span = json.resourceSpans[0].scopeSpans[0].spans[0]
    assert.strictEqual(span.traceId, TRACE)
    assert.strictEqual(span.parentSpanId, "b7ad6b7169203331")
    assert.strictEqual(span.startTimeUnixNano, String(1_000_000_123n + OFFSET))
    assert.strictEqual(span.kind, 2)
    assert.strictEqual(span.flags, 0x301)
    assert.deepStrictEqual(span.status, { code: 0 })
    assert.deepStrictEqual(span.attributes.find((a: any) => a.key === "http.response.status_code").value, {
      intValue: "200"
    })
    assert.deepStrictEqual(span.attributes.find((a: any) => a.key === "big").value, { intValue: "1152921504606846976" })
    const nan = JSON.parse(encoder.json([{ ...items[0]!, span: { ...base, attributes: { x: NaN, y: -Infinity } } }])
      .toString())
    assert.deepStrictEqual(nan.resourceSpans[0].scopeSpans[0].spans[0].attributes, [
      { key: "x", value: { doubleValue: "NaN" } },
      { key: "y", value: { doubleValue: "-Infinity" } }
    ])
  })

  it("OTLP/JSON matches the SDK's JSON serializer", () => {
    // The SDK writes int64 as JSON numbers (exact only up to 2^53): compared on the values both can carry.
    const exact = spans.map(([span, resource]): readonly [SpanData, typeof api] => [{
      ...span,
      attributes: Object.fromEntries(
        Object.entries(span.attributes).filter(([, v]) => typeof v !== "number" || Math.abs(v) <= 2 ** 53)
      )
    }, resource])
    const mine = encoder.json(exact.map(([span, resource]) => ({ span, probe: span.probe, resource, offsetNs: OFFSET })))
    const sdk = JsonTraceSerializer.serializeRequest(
      exact.map(([span, resource]) => toReadableSpan(span, resource, VERSION, (ns) => ns + OFFSET))
    )!
    assert.deepStrictEqual(
      comparableJson(JSON.parse(mine.toString("utf8"))),
      comparableJson(JSON.parse(Buffer.from(sdk).toString("utf8")))
    )
  })
  it("built span by span, with other requests in the making beside it, a request is the batch's encoding", () => {
    // Two requests of each encoding filled in turns: their group buffers come from one shared pool.
    const [a, b, j, k] = [encoder.builder(false), encoder.builder(false), encoder.builder(true), encoder.builder(true)]
    const other = items.slice().reverse()
    for (let i = 0; i < items.length; i++) {
      a.add(items[i]!)
      j.add(items[i]!)
      b.add(other[i]!)
      k.add(other[i]!)
    }
    assert.strictEqual(a.count(), items.length)
    assert.isTrue(a.finish().equals(encoder.protobuf(items)))
    assert.isTrue(b.finish().equals(encoder.protobuf(other)))
    assert.isTrue(j.finish().equals(encoder.json(items)))
    assert.isTrue(k.finish().equals(encoder.json(other)))
    // Finished, a builder starts over empty, its buffers back in the pool for the next request.
    assert.strictEqual(a.count(), 0)
    a.add(items[2]!)
    assert.isTrue(a.finish().equals(encoder.protobuf([items[2]!])))
    b.add(items[0]!)
    b.discard()
    assert.strictEqual(b.finish().length, 0)
  })

  it("a span that fails half-way through its encoding leaves the request as it was, and the error is thrown", () => {
    const builder = encoder.builder(false)
    builder.add(items[0]!)
    const attributes: Record<string, number> = { "ok": 1 }
    Object.defineProperty(attributes, "bad", {
      enumerable: true,
      get: () => {
        throw new TypeError("unreadable attribute")
      }
    })
    const broken: OtlpSpan = { ...items[0]!, span: { ...items[0]!.span, spanId: "9999999999999999", attributes } }
    assert.throws(() => builder.add(broken), TypeError, "unreadable attribute")
    builder.add(items[3]!)
    assert.strictEqual(builder.count(), 2)
    assert.isTrue(builder.finish().equals(encoder.protobuf([items[0]!, items[3]!])))
  })
})
