// Run (as root, after `npm run build`): node_modules/.bin/node bench/ringbuf.ts [seconds-per-case, default 2]
//
// How fast records get from the kernel ring buffer into JS. The producer is a SEC("syscall") program run with
// BPF_PROG_TEST_RUN that writes `bench_batch` 64-byte records into `events` with bpf_loop, so the kernel side is not
// the limit. Cases:
//   floor      producer alone (the ring is emptied untimed between runs): the rate the consumer is compared against
//   addon      producer + synchronous consume() through the addon: one JS call per batch, no Effect
//   stream     producer + BpfLive's Stream (uv poll + drain timer, bounded queue), read per array or per record;
//              closed loop (no loss: what the reader sustains) or open loop (the bounded queue drops and counts)
//   uprobe     a real producer: bpf/doctor.bpf.c on a Go function called in a tight loop (test/fixtures/go/roundtrip),
//              with wakeup batching and with one wakeup per record; the trap in the Go process is the limit here
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Fiber, Stream } from "effect"
import { Bpf, type MapRef } from "../src/kernel/Bpf.ts"
import * as BpfLive from "../src/kernel/BpfLive.ts"
import { loadAddon, type NativeObject } from "../src/kernel/internal/addon.ts"
import { buildRoundtrip, startRoundtrip } from "../test/kernel/fixtures.ts"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const seconds = Number(process.argv[2] ?? 2)
const batch = 4096
const recordBytes = 64

execFileSync(process.execPath, [path.join(root, "scripts", "build-native.mjs")], { stdio: "inherit" })
execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "inherit" })

const addon = loadAddon()
if (typeof addon === "string") throw new Error(addon)
const objectFile = path.join(root, "bpf", "out", "ringbuf_bench.bpf.o")

const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n)
  return b
}

/** A loaded producer; wakeupBytes 0 wakes the consumer on every record (no batching). */
const producer = (wakeupBytes: number): NativeObject => {
  const obj = new addon.BpfObject(objectFile, "ringbuf_bench")
  obj.setConstant("bench_batch", u32(batch))
  const wake = Buffer.alloc(8)
  wake.writeBigUInt64LE(BigInt(wakeupBytes))
  obj.setConstant("ps_wakeup_bytes", wake)
  obj.load()
  return obj
}

/** Sum of a per-CPU u64 value (one u64 per CPU). */
const sumPerCpu = (v: Uint8Array | null): number => {
  if (v === null) return 0
  const view = new DataView(v.buffer, v.byteOffset, v.byteLength)
  let total = 0
  for (let off = 0; off + 8 <= v.length; off += 8) total += Number(view.getBigUint64(off, true))
  return total
}

/** Sum of a per-CPU u64 counter of ps_stats. */
const stat = (obj: NativeObject, index: number): number => sumPerCpu(obj.lookup("ps_stats", u32(index)))

interface Row {
  readonly name: string
  readonly records: number
  readonly seconds: number
  readonly jsNsPerRecord: number | undefined
  readonly cpuNsPerRecord: number
  readonly recordsPerBatch: number | undefined
  readonly kernelDrops: number
  readonly userDrops: number
}

const cpuNs = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) * 1000
}

const floorCase = (): Row => {
  const obj = producer(64 * 1024)
  let records = 0
  let timed = 0n
  const rb = obj.ringBuffer("events", () => {}, 0, 1 << 20)
  const until = performance.now() + seconds * 1000
  const cpu0 = cpuNs()
  let cpuUntimed = 0
  while (performance.now() < until) {
    const t = process.hrtime.bigint()
    records += obj.testRun("bench_produce", null, 0).retval
    timed += process.hrtime.bigint() - t
    const c = cpuNs()
    rb.consume()
    cpuUntimed += cpuNs() - c
  }
  const cpu = cpuNs() - cpu0 - cpuUntimed
  const row = {
    name: "floor (producer only)",
    records,
    seconds: Number(timed) / 1e9,
    jsNsPerRecord: undefined,
    cpuNsPerRecord: cpu / records,
    recordsPerBatch: undefined,
    kernelDrops: stat(obj, 1),
    userDrops: 0
  }
  rb.stop()
  obj.close()
  return row
}

const addonCase = (): Row => {
  const obj = producer(64 * 1024)
  let received = 0
  let checksum = 0
  const rb = obj.ringBuffer("events", (data, offsets, count) => {
    // Touch every record like a decoder would: read its sequence number.
    for (let i = 0; i < count; i++) checksum += data.readUInt32LE(offsets[2 * i]!)
    received += count
  }, 0, 1 << 20)
  let jsNs = 0n
  const start = performance.now()
  const cpu0 = cpuNs()
  while (performance.now() - start < seconds * 1000) {
    obj.testRun("bench_produce", null, 0)
    const t = process.hrtime.bigint()
    rb.consume()
    jsNs += process.hrtime.bigint() - t
  }
  const elapsed = (performance.now() - start) / 1000
  const stats = rb.stats()
  const row = {
    name: "addon consume() batch",
    records: received,
    seconds: elapsed,
    jsNsPerRecord: Number(jsNs) / received,
    cpuNsPerRecord: (cpuNs() - cpu0) / received,
    recordsPerBatch: received / stats.batches,
    kernelDrops: stat(obj, 1),
    userDrops: checksum < 0 ? 1 : 0
  }
  rb.stop()
  obj.close()
  return row
}

/** The producer object's `events` map as a MapRef, so a BpfLive object can consume it (map sharing). */
const eventsRef = (obj: NativeObject): MapRef => {
  const fd = obj.maps().find((m) => m.name === "events")!.fd
  return { object: "ringbuf_bench", map: "events", handle: { fd } }
}

/**
 * Producer + BpfLive Stream. Closed loop: the next BPF_PROG_TEST_RUN waits until the reader has the previous batch,
 * so the figure is what the consumer sustains without loss. Open loop: produce as fast as possible and let the
 * bounded queue drop (and count) what the reader cannot take.
 */
const streamCase = (wakeupBytes: number, label: string, mode: "closed" | "open", perArray: boolean): Promise<Row> => {
  const prod = producer(wakeupBytes)
  const program = Effect.gen(function*() {
    const bpf = yield* Bpf
    const consumer = yield* bpf.load({
      file: objectFile,
      name: "ringbuf_consumer",
      reuseMaps: { events: eventsRef(prod) }
    })
    const rb = yield* consumer.ringBuffer("events", { capacity: 1 << 16 })
    let delivered = 0
    let checksum = 0
    const reader = yield* (perArray
      ? rb.records.pipe(Stream.runForEachArray((rs) =>
        Effect.sync(() => {
          for (const r of rs) checksum += r[0]!
          delivered += rs.length
        })
      ))
      : rb.records.pipe(Stream.runForEach((r) =>
        Effect.sync(() => {
          checksum += r[0]!
          delivered++
        })
      ))).pipe(Effect.forkChild)
    const tick = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    const start = performance.now()
    const cpu0 = cpuNs()
    let produced = 0
    while (performance.now() - start < seconds * 1000) {
      produced += prod.testRun("bench_produce", null, 0).retval
      // Let libuv run the poll/timer callbacks and the reader fiber, as a busy agent would.
      yield* tick
      if (mode === "closed") {
        while (delivered < produced && performance.now() - start < seconds * 1000 + 1000) yield* tick
      }
    }
    // Drain what is still in flight before stopping the clock.
    for (let i = 0; i < 200 && delivered + (yield* rb.stats).dropped < produced; i++) yield* Effect.sleep("5 millis")
    const elapsed = (performance.now() - start) / 1000
    const cpu = cpuNs() - cpu0
    const stats = yield* rb.stats
    yield* Fiber.interrupt(reader)
    return {
      name: label,
      records: delivered,
      seconds: elapsed,
      jsNsPerRecord: undefined,
      cpuNsPerRecord: cpu / delivered,
      recordsPerBatch: stats.received / stats.batches,
      kernelDrops: stat(prod, 1),
      userDrops: stats.dropped + (checksum < 0 ? 1 : 0)
    } satisfies Row
  }).pipe(Effect.scoped, Effect.provide(BpfLive.layer))
  return Effect.runPromise(program).finally(() => prod.close())
}

const rows: Array<Row> = [floorCase(), addonCase()]
rows.push(await streamCase(64 * 1024, "Stream runForEachArray, closed loop", "closed", true))
rows.push(await streamCase(64 * 1024, "Stream runForEach, closed loop", "closed", false))
rows.push(await streamCase(0, "Stream runForEach, closed, wake/record", "closed", false))
rows.push(await streamCase(64 * 1024, "Stream runForEach, open loop (drops)", "open", false))

/** Doctor uprobe on the Go fixture's function, `calls` calls in one tight loop, consumed through the Stream. */
const uprobeCase = async (wakeupBytes: number, label: string): Promise<Row> => {
  const binary = buildRoundtrip()
  const rt = await startRoundtrip(binary)
  const calls = 200_000
  const program = Effect.gen(function*() {
    const bpf = yield* Bpf
    const obj = yield* bpf.load({ file: path.join(root, "bpf", "out", "doctor.bpf.o"), constants: { ps_wakeup_bytes: wakeupBytes } })
    yield* obj.attachUprobe({ program: "doctor_uprobe", binary, symbol: "main.roundtripTarget", pid: rt.pid })
    const rb = yield* obj.ringBuffer("events", { capacity: 1 << 18 })
    let delivered = 0
    const reader = yield* rb.records.pipe(
      Stream.runForEachArray((rs) => Effect.sync(() => void (delivered += rs.length))),
      Effect.forkChild
    )
    const start = performance.now()
    const cpu0 = cpuNs()
    yield* Effect.promise(() => rt.call(calls, 1))
    for (let i = 0; i < 400 && delivered < calls; i++) yield* Effect.sleep("5 millis")
    const elapsed = (performance.now() - start) / 1000
    const cpu = cpuNs() - cpu0
    const stats = yield* rb.stats
    const drops = yield* obj.lookup("ps_stats", u32(1))
    yield* Fiber.interrupt(reader)
    const kernelDrops = sumPerCpu(drops._tag === "Some" ? drops.value : null)
    return {
      name: label,
      records: delivered,
      seconds: elapsed,
      jsNsPerRecord: undefined,
      cpuNsPerRecord: cpu / delivered,
      recordsPerBatch: stats.received / stats.batches,
      kernelDrops,
      userDrops: stats.dropped
    } satisfies Row
  }).pipe(Effect.scoped, Effect.provide(BpfLive.layer))
  try {
    return await Effect.runPromise(program)
  } finally {
    rt.stop()
  }
}

rows.push(await uprobeCase(64 * 1024, "uprobe Go loop, wakeup at 64 KiB"))
rows.push(await uprobeCase(0, "uprobe Go loop, wakeup per record"))

const floorRate = rows[0]!.records / rows[0]!.seconds
const fmt = (n: number | undefined, digits = 0) => n === undefined ? "-" : n.toLocaleString("en-US", {
  maximumFractionDigits: digits,
  minimumFractionDigits: digits
})
const table = rows.map((r) => {
  const rate = r.records / r.seconds
  return {
    case: r.name,
    records: fmt(r.records),
    "records/s": fmt(rate),
    "vs floor": `${fmt(rate / floorRate, 2)}x`,
    "JS ns/rec": fmt(r.jsNsPerRecord),
    "CPU ns/rec": fmt(r.cpuNsPerRecord),
    "rec/batch": fmt(r.recordsPerBatch, 1),
    "kernel drops": fmt(r.kernelDrops),
    "user drops": fmt(r.userDrops)
  }
})
console.log(`ring buffer -> JS, ${recordBytes}-byte records, ${batch} per BPF_PROG_TEST_RUN, ${seconds}s per case, ` +
  `libbpf ${addon.libbpfVersion()}, node ${process.version}`)
console.table(table)
