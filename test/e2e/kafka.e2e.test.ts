/**
 * kafka-go through the CLI into a real OpenTelemetry Collector (root): `probescope run --no-builtins --probe
 * src/instrumentations/KafkaGo.ts --probe src/instrumentations/NetHttp{Server,Client}.ts --exe <kafkago fixture>`
 * over three processes of the fixture (a producer, a consumer in one group reading with ReadMessage, one in another
 * group with FetchMessage + CommitMessages), against an Apache Kafka broker (KRaft, single node) the file starts once
 * (test/kafka/Broker.ts), for each supported Go release (and an older kafka-go).
 *
 * Each producer request's WriteMessages is a PRODUCER span under its server span; each consumer request's
 * ReadMessage or FetchMessage is a CONSUMER span in its own process, in the producer's trace with the producer span
 * as its parent (the same-host fallback: no header is written); the consumer's HTTP call after a read (with
 * context.Background()) is the poll span's child, and the trace goes on into the handler it calls; a write to a
 * missing topic is an ERROR PRODUCER span; the messaging.client.operation.duration histogram and the sent/consumed
 * counters arrive per process with their attributes. A stripped build of the fixture takes its offsets from the shipped
 * table (the same as its DWARF build's); with a table that does not cover it, it is "not supported" with the
 * reason.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { Effect, Exit, Layer, Scope } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as KafkaGo from "../../src/instrumentations/KafkaGo.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import { TargetAnalysis } from "../../src/target/GoBinary.ts"
import * as Offsets from "../../src/target/Offsets.ts"
import * as Collector from "../collector/Collector.ts"
import { buildKafkaGo, KAFKA_GO_VERSION } from "../instrumentations/KafkaGoFixture.ts"
import * as Broker from "../kafka/Broker.ts"
import type { ReceivedMetricPoint, ReceivedSpan } from "../receiver/Receiver.ts"
import {
  agentEnv,
  agentObjects,
  assertReleased,
  attachedLine,
  cli,
  get,
  type Ids,
  root,
  spawnProc,
  startService
} from "./harness.ts"

/**
 * The builds run: the Go releases the probe supports (GoContext.goVersions) with the pinned kafka-go, and an older
 * kafka-go release on one of them. (Releases before v0.4.30 are not run: their consumer groups speak protocol
 * versions Kafka 4 no longer accepts.)
 */
const builds = [
  { go: "1.25.9", kafkaGo: KAFKA_GO_VERSION },
  { go: "1.26.8", kafkaGo: KAFKA_GO_VERSION },
  { go: "1.27.3", kafkaGo: KAFKA_GO_VERSION },
  { go: "1.26.8", kafkaGo: "v0.4.30" }
] as const
const fixtures = new Map<string, string>()
const buildName = (b: (typeof builds)[number]) => `Go ${b.go}, kafka-go ${b.kafkaGo}`
let stripped = ""

/** One broker for the file (each build gets its own topics and groups), stopped in afterAll. */
const brokerScope = Effect.runSync(Scope.make())
let broker: Broker.Broker | undefined

beforeAll(async () => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  for (const b of builds) {
    fixtures.set(buildName(b), buildKafkaGo(b.go, b.kafkaGo === KAFKA_GO_VERSION ? {} : { kafkaGo: b.kafkaGo }))
  }
  stripped = buildKafkaGo("1.26.8", { stripped: true })
  broker = await Effect.runPromise(Broker.start().pipe(Scope.provide(brokerScope)))
  console.log(
    `kafka broker ${Broker.KAFKA_VERSION}: ready in ${broker.startMs} ms` +
      (broker.downloadMs === undefined ? "" : ` (its jars copied first, in ${broker.downloadMs} ms)`)
  )
}, 600_000)

afterAll(() => Effect.runPromise(Scope.close(brokerScope, Exit.void)), 60_000)


const one = (spans: ReadonlyArray<ReceivedSpan>, pred: (s: ReceivedSpan) => boolean, what: string) => {
  const found = spans.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} found`)
  return found[0]!
}

/** Entries of the agent's map `name` (bpftool shows names cut at 15 characters). */
const entries = (ours: Ids, name: string): number => {
  const found = [...ours.maps].flatMap((id) => {
    const m = JSON.parse(execFileSync("bpftool", ["-j", "map", "show", "id", String(id)]).toString()) as {
      readonly name?: string
    }
    return m.name === name.slice(0, 15) ? [id] : []
  })
  assert.strictEqual(found.length, 1, `the agent's map ${name}`)
  return (JSON.parse(execFileSync("bpftool", ["-j", "map", "dump", "id", String(found[0])]).toString()) as Array<
    unknown
  >).length
}

/** A body of the fixture's reply. */
const text = (url: string) =>
  Effect.promise(async () => {
    const res = await fetch(url, { signal: AbortSignal.timeout(30_000) })
    return { status: res.status, body: (await res.text()).trim() }
  })

describe.each(builds)("kafka-go through the CLI and a real collector (Go $go, kafka-go $kafkaGo)", (build) => {
  it.live("PRODUCER spans under the requests' spans, CONSUMER spans in the consumers continuing their traces", () =>
    Effect.gen(function*() {
      const fixture = fixtures.get(buildName(build))!
      const version = `${build.go}-${build.kafkaGo}`
      const collector = yield* Collector.make()
      const broker_ = broker!
      // Topics and groups of this build's own: a group's members from another test would hold up its rebalance
      // until their session timed out.
      const TOPIC = `orders-${version}`
      const GROUP = `billing-${version}`
      const FETCH_GROUP = `audit-${version}`
      const common = ["-brokers", broker_.bootstrap, "-topic", TOPIC]
      const producer = yield* startService(fixture, ["-mode", "produce", ...common])
      const consumer = yield* startService(fixture, ["-mode", "consume", ...common, "-group", GROUP])
      const fetcher = yield* startService(fixture, ["-mode", "consume", ...common, "-group", FETCH_GROUP, "-fetch"])
      const agent = yield* spawnProc(
        cli,
        [
          "run",
          "--no-builtins",
          "--probe",
          path.join(root, "src/instrumentations/KafkaGo.ts"),
          // The net/http probes as modules too: all then share one go_context (a built-in by name would come with
          // the CLI's own copy of it).
          "--probe",
          path.join(root, "src/instrumentations/NetHttpServer.ts"),
          "--probe",
          path.join(root, "src/instrumentations/NetHttpClient.ts"),
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
      for (const app of [producer, consumer, fetcher]) {
        const attached = attachedLine(app.pid).exec(agent.stderr())
        assert.isNotNull(attached, agent.stderr())
        assert.deepStrictEqual(attached![2]!.split(", ").sort(), [
          "go_context",
          "kafka_go",
          "nethttp_client",
          "nethttp_server"
        ])
      }

      const p = `http://${producer.addr}`
      const c = `http://${consumer.addr}`
      assert.deepStrictEqual(yield* text(`${p}/produce?key=order-1&value=paid`), { status: 200, body: "sent" })
      // After this read, the consumer calls the producer's /ping with context.Background(): the message's processing.
      assert.deepStrictEqual(yield* text(`${c}/read?then=${encodeURIComponent(`${p}/ping`)}`), {
        status: 200,
        body: "key=order-1 value=paid partition=0 offset=0"
      })
      assert.deepStrictEqual(yield* text(`http://${fetcher.addr}/read`), {
        status: 200,
        body: "key=order-1 value=paid partition=0 offset=0"
      })
      assert.deepStrictEqual(yield* text(`${p}/batch?value=item&n=3`), { status: 200, body: "sent" })
      for (let i = 0; i < 3; i++) {
        assert.deepStrictEqual(yield* text(`${c}/read`), {
          status: 200,
          body: `key= value=item-${i} partition=0 offset=${i + 1}`
        })
      }
      assert.strictEqual(yield* get(`${p}/missing?value=lost`), 500)

      // Producer: 3 server spans and 3 PRODUCER spans; consumer: 4 server spans and 4 CONSUMER spans; fetcher: 1 + 1.
      // And the consumer's HTTP call after its first read: a CLIENT span and the producer's /ping SERVER span.
      const spans = yield* collector.receiver.waitFor(18, "30 seconds")
      const shown = spans.map((s) =>
        [s.resource["process.pid"], s.name, s.kind, s.traceId, s.spanId, s.parentSpanId, s.attributes, s.status]
      )
      assert.strictEqual(spans.length, 18, JSON.stringify(shown))
      const server = (pid: number, route: string) =>
        spans.filter((s) => s.attributes["http.route"] === route && s.resource["process.pid"] === pid)
      const [produce] = server(producer.pid, "/produce")
      const [batch] = server(producer.pid, "/batch")
      const [missing] = server(producer.pid, "/missing")
      assert.strictEqual(server(consumer.pid, "/read").length, 4)
      assert.strictEqual(server(fetcher.pid, "/read").length, 1)
      const ok = { code: "STATUS_CODE_UNSET", message: "" }
      const brokerAttributes = { "server.address": "127.0.0.1", "server.port": broker_.port }
      const sendAttributes = (topic: string, more: object = {}) => ({
        "messaging.system": "kafka",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": topic,
        ...brokerAttributes,
        ...more
      })
      const producerSpan = (parent: ReceivedSpan | undefined, topic: string) => {
        assert.isDefined(parent)
        const s = one(spans, (s) => s.parentSpanId === parent!.spanId && s.kind === "SPAN_KIND_PRODUCER", topic)
        assert.strictEqual(s.name, `send ${topic}`)
        assert.strictEqual(s.scope.name, "probescope/kafka_go")
        assert.strictEqual(s.resource["process.pid"], producer.pid)
        assert.strictEqual(s.traceId, parent!.traceId)
        return s
      }
      const sent = producerSpan(produce, TOPIC)
      assert.deepStrictEqual([sent.attributes, sent.status], [
        sendAttributes(TOPIC, { "messaging.kafka.message.key": "order-1" }),
        ok
      ])
      const sentBatch = producerSpan(batch, TOPIC)
      assert.deepStrictEqual([sentBatch.attributes, sentBatch.status], [
        sendAttributes(TOPIC, { "messaging.batch.message_count": 3 }),
        ok
      ])
      const failed = producerSpan(missing, `${TOPIC}-missing`)
      assert.deepStrictEqual([failed.attributes, failed.status], [
        sendAttributes(`${TOPIC}-missing`, { "error.type": "kafka.Error" }),
        { code: "STATUS_CODE_ERROR", message: "kafka.Error 3" }
      ])

      // The consumer's spans: children of the producer span that wrote the message, in the consumer process.
      const consumerSpans = (pid: number) =>
        spans.filter((s) => s.kind === "SPAN_KIND_CONSUMER" && s.resource["process.pid"] === pid)
      const consumed = consumerSpans(consumer.pid)
      assert.strictEqual(consumed.length, 4)
      const pollAttributes = (offset: number, more: object = {}, group = GROUP) => ({
        "messaging.system": "kafka",
        "messaging.operation.name": "poll",
        "messaging.operation.type": "receive",
        "messaging.destination.name": TOPIC,
        "messaging.consumer.group.name": group,
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": offset,
        ...brokerAttributes,
        ...more
      })
      const byOffset = (offset: number) =>
        one(consumed, (s) => s.attributes["messaging.kafka.offset"] === offset, `offset ${offset}`)
      const first = byOffset(0)
      assert.deepStrictEqual(
        [first.name, first.scope.name, first.resource["process.pid"], first.traceId, first.parentSpanId],
        [`poll ${TOPIC}`, "probescope/kafka_go", consumer.pid, sent.traceId, sent.spanId]
      )
      assert.deepStrictEqual([first.attributes, first.status], [
        pollAttributes(0, { "messaging.kafka.message.key": "order-1" }),
        ok
      ])
      // What the consumer did with the message without a context span (context.Background()) is the poll span's
      // child, and the trace goes on into the producer's /ping handler (same-host connection linking).
      const call = one(spans, (s) => s.kind === "SPAN_KIND_CLIENT", "the consumer's HTTP call")
      assert.deepStrictEqual(
        [call.resource["process.pid"], call.traceId, call.parentSpanId],
        [consumer.pid, sent.traceId, first.spanId]
      )
      const [ping] = server(producer.pid, "/ping")
      assert.isDefined(ping)
      assert.deepStrictEqual([ping!.traceId, ping!.parentSpanId], [sent.traceId, call.spanId])
      // The other group's FetchMessage got the same message: linked to the same producer span (one span: the
      // ReadMessage path's inner FetchMessage is not one of its own either, as the 4 spans above show).
      const fetched = one(consumerSpans(fetcher.pid), () => true, "FetchMessage")
      assert.deepStrictEqual(
        [fetched.name, fetched.traceId, fetched.parentSpanId, fetched.attributes, fetched.status],
        [
          `poll ${TOPIC}`,
          sent.traceId,
          sent.spanId,
          pollAttributes(0, { "messaging.kafka.message.key": "order-1" }, FETCH_GROUP),
          ok
        ]
      )
      for (const offset of [1, 2, 3]) {
        const s = byOffset(offset)
        assert.deepStrictEqual(
          [s.name, s.resource["process.pid"], s.traceId, s.parentSpanId, s.attributes, s.status],
          [`poll ${TOPIC}`, consumer.pid, sentBatch.traceId, sentBatch.spanId, pollAttributes(offset), ok]
        )
      }

      // In the kernel, every call is over: nothing in flight; one published entry per produced message (1 + 3 + the
      // failed one's), each there still (not removed on consumption, so every group finds it).
      const ours = yield* agentObjects(agent.pid)
      assert.deepStrictEqual(
        [entries(ours, "kafka_go_inflight"), entries(ours, "kafka_go_msg_spans")],
        [0, 5]
      )

      // Stopping the agent exports the metrics once, on the way out, and releases its BPF objects.
      agent.child.kill("SIGINT")
      const exit = yield* agent.exit("30 seconds")
      assert.strictEqual(exit.code, 0, agent.stderr())
      yield* assertReleased(ours)
      const names = [KafkaGo.operationDuration.name, KafkaGo.sentMessages.name, KafkaGo.consumedMessages.name]
      // Compared as sorted key-value lists: the receiver's attribute order is not the span's.
      const key = (p: ReceivedMetricPoint) =>
        JSON.stringify([p.name, p.resource["process.pid"], Object.entries(p.attributes).sort(), p.count ?? p.value])
      const metric = (name: string, pid: number, attributes: object, n: number) =>
        JSON.stringify([name, pid, Object.entries(attributes).sort(), n])
      const { "messaging.operation.type": _s, ...sendCounted } = sendAttributes(TOPIC)
      const { "messaging.operation.type": _e, ...missingCounted } = sendAttributes(`${TOPIC}-missing`, {
        "error.type": "kafka.Error"
      })
      const { "messaging.kafka.offset": _o, "messaging.operation.type": _r, ...pollCounted } = pollAttributes(0)
      const { "messaging.kafka.offset": _o2, ...pollMetric } = pollAttributes(0)
      const { "messaging.kafka.offset": _o3, ...fetchMetric } = pollAttributes(0, {}, FETCH_GROUP)
      const { "messaging.operation.type": _r2, ...fetchCounted } = fetchMetric
      const duration = KafkaGo.operationDuration.name
      const expected = [
        metric(duration, producer.pid, sendAttributes(TOPIC), 2),
        metric(duration, producer.pid, sendAttributes(`${TOPIC}-missing`, { "error.type": "kafka.Error" }), 1),
        metric(duration, consumer.pid, pollMetric, 4),
        metric(duration, fetcher.pid, fetchMetric, 1),
        metric(KafkaGo.consumedMessages.name, fetcher.pid, fetchCounted, 1),
        metric(KafkaGo.sentMessages.name, producer.pid, sendCounted, 4),
        metric(KafkaGo.sentMessages.name, producer.pid, missingCounted, 1),
        metric(KafkaGo.consumedMessages.name, consumer.pid, pollCounted, 4)
      ].sort()
      // Every series before the exact check: the collector may pass the last export on in more than one request.
      const points = (yield* collector.receiver.waitForMetrics(
        (ps) => {
          const got = new Set(ps.filter((p) => names.includes(p.name)).map(key))
          return expected.every((k) => got.has(k))
        },
        "20 seconds"
      )).filter((p) => names.includes(p.name))
      assert.deepStrictEqual(points.map(key).sort(), expected)
      for (const p of points.filter((p) => p.name === duration)) {
        assert.deepStrictEqual(
          [p.type, p.unit, p.description, p.explicitBounds, p.scope.name],
          [
            "histogram",
            "s",
            KafkaGo.operationDuration.description,
            [...KafkaGo.operationDuration.boundaries!],
            "probescope/kafka_go"
          ]
        )
        assert.isTrue(p.sum! > 0 && p.sum! < 30, `sum ${p.sum}`)
      }
    }).pipe(Effect.scoped), 300_000)
})

describe("kafka-go: stripped builds", () => {
  const pkg = "github.com/segmentio/kafka-go"
  const agent = ManagerM.layer.pipe(
    Layer.provide(KafkaGo.KafkaGo.layer),
    Layer.provideMerge(ProbeTest.layer),
    Layer.provideMerge(GoBinary.layer)
  )
  /** The shipped offsets table without kafka-go: what a stripped build of a release it does not cover gets. */
  const withoutKafkaGo = ManagerM.layer.pipe(
    Layer.provide(KafkaGo.KafkaGo.layer),
    Layer.provideMerge(ProbeTest.layer),
    Layer.provideMerge(GoBinary.layerWith({
      table: {
        ...Offsets.shipped,
        modules: Object.fromEntries(Object.entries(Offsets.shipped.modules).filter(([m]) => m !== pkg))
      }
    }))
  )

  it.live("a stripped build: kafka-go's offsets from the shipped table, the same as its DWARF build's", () =>
    Effect.gen(function*() {
      // The consumer mode listens without a broker (the reader connects on its first read).
      const app = yield* startService(stripped, ["-mode", "consume", "-brokers", "127.0.0.1:1"])
      const dwarf = yield* startService(fixtures.get(buildName(builds.find((b) => b.go === "1.26.8" &&
        b.kafkaGo === KAFKA_GO_VERSION)!))!, ["-mode", "consume", "-brokers", "127.0.0.1:1"])
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      const offsets = (target: Parameters<typeof manager.inspect>[0]) => {
        const a = manager.inspect(target).find((i) => i.probe === "kafka_go")!.applicability
        return a._tag === "Applies" ? a.offsets : a
      }
      const fromTable = offsets(yield* analysis.analyzePid(app.pid))
      assert.deepStrictEqual(fromTable, offsets(yield* analysis.analyzePid(dwarf.pid)))
      assert.isNumber((fromTable as Record<string, unknown>)["msgTopic"])
    }).pipe(Effect.provide(agent), Effect.scoped))

  it.live("a stripped build of a release the table does not cover: not supported, with the reason", () =>
    Effect.gen(function*() {
      const app = yield* startService(stripped, ["-mode", "consume", "-brokers", "127.0.0.1:1"])
      const target = yield* (yield* TargetAnalysis).analyzePid(app.pid)
      const manager = yield* Manager
      assert.deepStrictEqual(manager.inspect(target).find((i) => i.probe === "kafka_go")!.applicability, {
        _tag: "NotApplicable",
        probe: "kafka_go",
        reason: `no offset for ${pkg}.Message.Topic (Go 1.26.8, ${pkg} ${KAFKA_GO_VERSION})`
      })
    }).pipe(Effect.provide(withoutKafkaGo), Effect.scoped))
})
