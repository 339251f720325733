import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { ProbeStats } from "../../src/manager/Manager.ts"
import * as Status from "../../src/cli/Status.ts"
import type { TelemetryStats } from "../../src/telemetry/Telemetry.ts"

const probe = (name: string, records: number, over: Partial<ProbeStats> = {}): ProbeStats => ({
  probe: name,
  kind: "instrument",
  load: "loaded",
  targets: 1,
  attachFailures: 0,
  records,
  decodeErrors: 0,
  skipped: 0,
  signalErrors: 0,
  unsupported: 0,
  consumerDropped: 0,
  kernelSubmitted: BigInt(records),
  kernelDropped: 0n,
  ...over
})

const exporter = (over: { failing?: boolean; queued?: number; inFlight?: number } = {}) =>
  ({ failing: false, queued: 0, inFlight: 0, ...over }) as unknown as TelemetryStats["exporters"][number]

const telemetry = (over: Partial<TelemetryStats> = {}): TelemetryStats => ({
  received: 0,
  invalid: 0,
  exporters: [exporter()],
  metrics: [],
  measurements: 0,
  logRecords: 0,
  logs: [],
  lost: { spans: 0, metricPoints: 0, logRecords: 0, total: 0 },
  ...over
})

const snap = (atMillis: number, probes: ReadonlyArray<ProbeStats>, t = telemetry(), targets = 2): Status.Snapshot => ({
  atMillis,
  targets,
  probes,
  telemetry: t
})

describe("status", () => {
  it("rates are records per second between two snapshots, per instrument probe; daemons are not shown", () => {
    const daemon = probe("go_context", 0, { kind: "daemon" })
    const before = snap(1_000, [daemon, probe("nethttp_server", 100), probe("nethttp_client", 10)])
    const after = snap(3_000, [daemon, probe("nethttp_server", 124), probe("nethttp_client", 13)])
    const s = Status.status(before, after)
    assert.deepStrictEqual(s.rates, [
      { probe: "nethttp_server", perSecond: 12 },
      { probe: "nethttp_client", perSecond: 1.5 }
    ])
    assert.strictEqual(
      Status.render(s),
      "2 targets · nethttp_server 12.0/s · nethttp_client 1.5/s · drops kernel 0 consumer 0 · " +
        "export spans ok metrics off logs off · queue 0"
    )
  })

  it("the first snapshot has rates of 0; drops add up over probes; a failing exporter and the queue show", () => {
    const now = snap(5_000, [
      probe("nethttp_server", 7, { kernelDropped: 3n, consumerDropped: 1 }),
      probe("nethttp_client", 2, { kernelDropped: 2n })
    ], telemetry({
      exporters: [exporter({ failing: true, queued: 40, inFlight: 2 })],
      metrics: [exporter()] as never,
      logs: [exporter({ failing: true })]
    }), 1)
    const s = Status.status(undefined, now)
    assert.deepStrictEqual(s, {
      targets: 1,
      rates: [{ probe: "nethttp_server", perSecond: 0 }, { probe: "nethttp_client", perSecond: 0 }],
      drops: { kernel: 5, consumer: 1 },
      export: { spans: "failing", metrics: "ok", logs: "failing" },
      queue: 42
    })
    assert.strictEqual(
      Status.render(s),
      "1 target · nethttp_server 0.0/s · nethttp_client 0.0/s · drops kernel 5 consumer 1 · " +
        "export spans failing metrics ok logs failing · queue 42"
    )
    assert.deepStrictEqual(Status.annotations(s), {
      targets: 1,
      recordsPerSecond: { nethttp_server: 0, nethttp_client: 0 },
      droppedKernel: 5,
      droppedConsumer: 1,
      exportSpans: "failing",
      exportMetrics: "ok",
      exportLogs: "failing",
      queue: 42
    })
  })

  it("a line wider than the terminal is cut, so redrawing in place never wraps", () => {
    const s = Status.status(undefined, snap(0, [probe("nethttp_server", 0)], telemetry({ exporters: [] })))
    assert.strictEqual(Status.render(s, 30), "2 targets · nethttp_server 0.…")
    assert.strictEqual(Status.render(s, 30).length, 30)
  })
})

describe("live line", () => {
  it("other output goes above the line, which is redrawn after it, and closing erases it and restores write", () =>
    Effect.gen(function*() {
      const written: Array<string> = []
      const terminal: Status.Terminal = {
        isTTY: true,
        write(chunk) {
          written.push(String(chunk))
          return true
        }
      }
      const original = terminal.write
      yield* Effect.scoped(Effect.gen(function*() {
        const live = yield* Status.liveLine(terminal)
        yield* live.show("1 target")
        terminal.write("a log line\n")
        yield* live.show("2 targets")
      }))
      assert.deepStrictEqual(written, [
        "\r\x1b[2K1 target",
        "\r\x1b[2K",
        "a log line\n",
        "1 target",
        "\r\x1b[2K2 targets",
        "\r\x1b[2K"
      ])
      assert.strictEqual(terminal.write, original)
    }).pipe(Effect.runPromise))
})
