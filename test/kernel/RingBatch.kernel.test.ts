/**
 * The addon's ring-buffer reader: every batch lands in one buffer JS holds for the life of the reader (one copy from
 * the ring, nothing allocated per batch), a record that does not fit a full batch opens the next one, and the drain
 * timer backs off while the ring is empty and comes back to its interval when records arrive. The producer is
 * bpf/test/ringbuf_bench.bpf.c run with BPF_PROG_TEST_RUN: 64-byte records numbered from 0.
 */
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

  it("the drain timer backs off on an empty ring and returns to its interval when records come", async () => {
    const obj = producer(10)
    try {
      let received = 0
      const rb = obj.ringBuffer("events", (_d, _o, count) => void (received += count), 5, 4096)
      const drainMs = () => rb.stats().drainMs
      expect(drainMs()).toBe(5)
      const until = async (f: () => boolean, ms: number) => {
        const end = Date.now() + ms
        while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 10))
      }
      // 5, 10, 20, ... 200 ms: about 0.6 s of empty drains to reach the longest interval.
      await until(() => drainMs() === 200, 3000)
      expect(drainMs()).toBe(200)
      obj.testRun("bench_produce", null, 0)
      await until(() => received === 10, 3000)
      expect(received).toBe(10)
      // Back to 5 ms at that drain; an empty drain or two since may have doubled it again (it takes 0.3 s of empty
      // drains to reach 200 ms).
      expect(drainMs()).toBeLessThanOrEqual(20)
      rb.stop()
    } finally {
      obj.close()
    }
  })
})
