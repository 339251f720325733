/**
 * The addon's ring-buffer reader: every batch lands in one buffer JS holds for the life of the reader (one copy from
 * the ring, nothing allocated per batch), the ring's data is mapped only once it holds a record, a record that does
 * not fit a full batch opens the next one, the drain timer backs off on an empty ring and comes back to its interval
 * when records arrive, and a ring past its wakeup threshold is drained at once. The producer is
 * bpf/test/ringbuf_bench.bpf.c run with BPF_PROG_TEST_RUN: 64-byte records numbered from 0.
 */
import * as fs from "node:fs"
import { describe, expect, it } from "vitest"
import { loadAddon, type NativeObject } from "../../src/kernel/internal/addon.ts"
import { bpfObject, buildAll } from "./fixtures.ts"

buildAll()
const addon = loadAddon()
if (typeof addon === "string") throw new Error(addon)

const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n)
  return b
}

/** A producer of `n` records per run that never forces a wakeup (the reader drains by timer or by hand). */
const producer = (n: number): NativeObject => {
  const obj = new addon.BpfObject(bpfObject("ringbuf_bench"), "ringbuf_bench")
  obj.setConstant("bench_batch", u32(n))
  obj.setConstant("ps_wakeup_bytes", Buffer.alloc(8, 0xff))
  obj.load()
  return obj
}

const u64 = (n: number) => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(BigInt(n))
  return b
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const until = async (f: () => boolean, ms: number) => {
  const end = Date.now() + ms
  while (!f() && Date.now() < end) await sleep(5)
}

/** KiB of this process's RSS in BPF map mappings (ring buffers, and the global data libbpf maps), from smaps. */
const bpfMapRssKiB = () => {
  let kib = 0
  let inMap = false
  for (const line of fs.readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inMap = line.endsWith("anon_inode:bpf-map")
    else if (inMap && line.startsWith("Rss:")) kib += Number(line.split(/\s+/)[1])
  }
  return kib
}

const seqOf = (data: Uint8Array, at: number) => Number(Buffer.from(data.buffer, data.byteOffset).readBigUInt64LE(at))

describe("ring-buffer batches", () => {
  it("land in one reused buffer, at most batchBytes each, every record once and in order", () => {
    const obj = producer(1000)
    try {
      const seen: Array<number> = []
      const buffers = new Set<ArrayBufferLike>()
      const sizes: Array<number> = []
      const rb = obj.ringBuffer("events", (data, offsets, count) => {
        buffers.add(data.buffer)
        let bytes = 0
        for (let i = 0; i < count; i++) {
          expect(offsets[2 * i + 1]).toBe(64)
          seen.push(seqOf(data, offsets[2 * i]!))
          bytes = offsets[2 * i]! + offsets[2 * i + 1]!
        }
        sizes.push(bytes)
      }, 0, 4096, 4096)
      obj.testRun("bench_produce", null, 0)
      while (rb.consume() > 0) {
        // every batch
      }
      rb.stop()
      expect(seen).toEqual(Array.from({ length: 1000 }, (_, i) => i))
      // 64 records of 64 bytes fill 4096 bytes exactly: the 65th is taken from the ring, kept, and opens the next.
      expect(sizes.length).toBe(Math.ceil(1000 / 64))
      expect(Math.max(...sizes)).toBe(4096)
      expect(buffers.size).toBe(1)
    } finally {
      obj.close()
    }
  })

  it("a ring's data is mapped at the first drain that finds a record, not before", () => {
    const obj = producer(10)
    try {
      const ringKiB = obj.maps().find((m) => m.name === "events")!.maxEntries / 1024
      const before = bpfMapRssKiB()
      let seen = 0
      const rb = obj.ringBuffer("events", (_data, _offsets, count) => void (seen += count), 0, 4096, 4096)
      expect(rb.consume()).toBe(0)
      // Nothing to read: only the consumer and producer pages are mapped, not the ring's data (twice its size).
      const idle = bpfMapRssKiB() - before
      expect(idle).toBeLessThanOrEqual(16)
      obj.testRun("bench_produce", null, 0)
      expect(rb.consume()).toBe(10)
      expect(seen).toBe(10)
      // Now mapped: the kernel maps the data pages twice over (a record may wrap), all at once.
      expect(bpfMapRssKiB() - before).toBeGreaterThanOrEqual(2 * ringKiB)
      rb.stop()
    } finally {
      obj.close()
    }
  })

  it("the drain timer backs off to 1 s on an empty ring and returns to its interval when records come", async () => {
    const obj = producer(10)
    try {
      let received = 0
      const rb = obj.ringBuffer("events", (_d, _o, count) => void (received += count), 5, 4096)
      rb.setWakeupBytes(Infinity)
      const drainMs = () => rb.stats().drainMs
      expect(drainMs()).toBe(5)
      // 5, 10, 20, ... 640, 1000 ms: about 1.3 s of empty drains to reach the longest interval.
      await until(() => drainMs() === 1000, 5000)
      expect(drainMs()).toBe(1000)
      // Backed off, the timer drains once a second: 1.2 s at 5 ms would be ~240 drains.
      const before = rb.stats().timerWakeups
      await sleep(1200)
      expect(rb.stats().timerWakeups - before).toBeLessThanOrEqual(2)
      expect(() => rb.setWakeupBytes(-1)).toThrow(new RangeError("setWakeupBytes: expected bytes >= 0"))
      // Below the threshold, records wait for the next tick (within the 1 s interval), then the interval is 5 again.
      const started = Date.now()
      obj.testRun("bench_produce", null, 0)
      await until(() => received === 10, 3000)
      expect(received).toBe(10)
      expect(Date.now() - started).toBeLessThan(2500)
      expect(rb.stats().ringWakeups).toBe(0)
      // Back to 5 ms at that drain; an empty drain or two since may have doubled it again.
      expect(drainMs()).toBeLessThanOrEqual(20)
      rb.stop()
    } finally {
      obj.close()
    }
  })

  it("with a wakeup threshold of 0 the timer never ticks: every record is drained on its wakeup, none waits", async () => {
    // ps_wakeup_bytes 0: the producer wakes a caught-up reader at every record (as discovery's exec/exit ring does).
    // 300 records per run, 16 per batch: more than the 16 batches (256 records) one drain hands over.
    const obj = new addon.BpfObject(bpfObject("ringbuf_bench"), "ringbuf_bench")
    try {
      obj.setConstant("bench_batch", u32(300))
      obj.setConstant("ps_wakeup_bytes", u64(0))
      obj.load()
      const seen: Array<number> = []
      const rb = obj.ringBuffer("events", (data, offsets, count) => {
        for (let i = 0; i < count; i++) seen.push(seqOf(data, offsets[2 * i]!))
      }, 5, 16)
      // Produced before the reader is told: these woke no one; the one drain at the switch reads them, and what it
      // leaves (past 256) is drained at once after it.
      obj.testRun("bench_produce", null, 0)
      rb.setWakeupBytes(0)
      expect(rb.stats().drainMs).toBe(0)
      await until(() => seen.length === 300, 1000)
      expect(seen.length).toBe(300)
      // Idle: at 5 ms, backing off, the timer would have drained about ten times in 1.2 s; with no ticks, never.
      const idle = rb.stats().timerWakeups
      await sleep(1200)
      expect(rb.stats().timerWakeups).toBe(idle)
      // Records into the idle ring are drained on their wakeup, well before any tick would have come.
      const wakeups = rb.stats().ringWakeups
      const started = Date.now()
      obj.testRun("bench_produce", null, 0)
      await until(() => seen.length === 600, 1000)
      expect(seen.length).toBe(600)
      expect(Date.now() - started).toBeLessThan(500)
      expect(rb.stats().ringWakeups).toBeGreaterThan(wakeups)
      expect(seen).toEqual(Array.from({ length: 600 }, (_, i) => i))
      // Any other threshold brings the ticks back at the ring's interval.
      rb.setWakeupBytes(4096)
      expect(rb.stats().drainMs).toBe(5)
      rb.stop()
    } finally {
      obj.close()
    }
  })

  it("with a wakeup threshold of 0, records soon after a drain wait for a drain a window after it, the window growing",
    async () => {
      // A storm of execs: the first record after a quiet while is drained on its wakeup; those right after it wait
      // for one drain at the window's end (20 ms at first: kStormStartMs, not the ring's 100 ms interval), the ring
      // left unread until then so the kernel does not wake us again; while records keep coming the window doubles,
      // up to 160 ms.
      const obj = new addon.BpfObject(bpfObject("ringbuf_bench"), "ringbuf_bench")
      try {
        obj.setConstant("bench_batch", u32(10))
        obj.setConstant("ps_wakeup_bytes", u64(0))
        obj.load()
        let received = 0
        const rb = obj.ringBuffer("events", (_d, _o, count) => void (received += count), 100, 4096)
        rb.setWakeupBytes(0)
        await sleep(300)
        const start = rb.stats()
        obj.testRun("bench_produce", null, 0)
        await until(() => received === 10, 1000)
        expect(received).toBe(10)
        const first = rb.stats()
        expect(first.ringWakeups - start.ringWakeups).toBe(1)
        expect(first.timerWakeups).toBe(start.timerWakeups)
        // Two more runs at once: one wakeup, then one timer drain for both.
        obj.testRun("bench_produce", null, 0)
        obj.testRun("bench_produce", null, 0)
        await until(() => received === 30, 1000)
        expect(received).toBe(30)
        const after = rb.stats()
        expect(after.ringWakeups - first.ringWakeups).toBe(1)
        expect(after.timerWakeups - first.timerWakeups).toBe(1)
        expect(after.batches - first.batches).toBe(1)
        // Again right after that drain: the window has grown to 40 ms, so this drain comes about that long after
        // the last one (at a fixed window, about 20).
        const again = Date.now()
        obj.testRun("bench_produce", null, 0)
        await until(() => received === 40, 2000)
        expect(received).toBe(40)
        expect(Date.now() - again).toBeGreaterThanOrEqual(30)
        rb.stop()
      } finally {
        obj.close()
      }
    })

  it("a ring past the wakeup threshold is drained at once, with nothing lost, however long the timer", async () => {
    // 16 KiB ring, wakeup at 4 KiB, 128 records of 72 bytes (9 KiB) per run: each run crosses the threshold.
    const obj = new addon.BpfObject(bpfObject("ringbuf_bench"), "ringbuf_bench")
    try {
      obj.setConstant("bench_batch", u32(128))
      obj.setConstant("ps_wakeup_bytes", u64(4096))
      obj.setMaxEntries("events", 16384)
      obj.load()
      const seen: Array<number> = []
      const rb = obj.ringBuffer("events", (data, offsets, count) => {
        for (let i = 0; i < count; i++) seen.push(seqOf(data, offsets[2 * i]!))
      }, 1000, 4096)
      rb.setWakeupBytes(4096)
      const runs = 8
      for (let run = 1; run <= runs; run++) {
        // Two runs without a drain between would overflow the ring: each must be drained before the next.
        obj.testRun("bench_produce", null, 0)
        await until(() => seen.length === 128 * run, 900)
        expect(seen.length).toBe(128 * run)
      }
      expect(seen).toEqual(Array.from({ length: 128 * runs }, (_, i) => i))
      // The 1 s timer ran at most once: the forced wakeups did the draining.
      const stats = rb.stats()
      expect(stats.timerWakeups).toBeLessThanOrEqual(1)
      expect(stats.ringWakeups).toBeGreaterThanOrEqual(runs)
      rb.stop()
    } finally {
      obj.close()
    }
  })
})
