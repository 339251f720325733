/**
 * The OTLP exporter's pool of request bodies (src/telemetry/internal/otlp/bodyPool.ts): memory comes back only when
 * every holder is done with it, a hold never ended keeps it out for good, and the pool stays small.
 */
import { assert, describe, it } from "@effect/vitest"
import * as BodyPool from "../../src/telemetry/internal/otlp/bodyPool.ts"

/** Whether two bodies are views of the same memory. */
const sameMemory = (a: Buffer, b: Buffer) => a.buffer === b.buffer && a.byteOffset === b.byteOffset

describe("BodyPool", () => {
  it("a body comes back once its holders are all done; the next body of its size or less is written there", () => {
    const pool = BodyPool.make()
    const first = pool.alloc(800 * 1024)
    assert.strictEqual(first.bytes.length, 800 * 1024)
    const attempt = first.hold()
    first.release()
    assert.strictEqual(pool.free(), 0, "an attempt still holds it")
    const meanwhile = pool.alloc(1000)
    assert.isFalse(sameMemory(meanwhile.bytes, first.bytes), "a held body is not handed out again")
    attempt()
    assert.strictEqual(pool.free(), 1)
    const next = pool.alloc(700 * 1024)
    assert.strictEqual(next.bytes.length, 700 * 1024)
    assert.isTrue(sameMemory(next.bytes, first.bytes))
    assert.strictEqual(pool.free(), 0)
  })

  it("a hold never ended (a request cut off mid-write) keeps its body out of the pool", () => {
    const pool = BodyPool.make()
    const body = pool.alloc(4096)
    body.hold() // never ended
    body.release()
    assert.strictEqual(pool.free(), 0)
    assert.isFalse(sameMemory(pool.alloc(4096).bytes, body.bytes))
  })

  it("each hold and the first release count once, however often they are called", () => {
    const pool = BodyPool.make()
    const body = pool.alloc(4096)
    const a = body.hold()
    const b = body.hold()
    a()
    a()
    body.release()
    body.release()
    assert.strictEqual(pool.free(), 0, "b still holds it")
    b()
    assert.strictEqual(pool.free(), 1)
    b()
    body.release()
    assert.strictEqual(pool.free(), 1, "not pooled twice")
    // A hold taken after the body went back (a caller's bug) does not return it again once it is another body's.
    const late = body.hold()
    const next = pool.alloc(4096)
    assert.isTrue(sameMemory(next.bytes, body.bytes))
    late()
    assert.strictEqual(pool.free(), 0, "the memory in use is not handed out twice")
  })

  it("grows to the workload: a free buffer too small is dropped; past maxBytes and past `keep` nothing is kept", () => {
    const pool = BodyPool.make({ keep: 2, maxBytes: 1024 * 1024 })
    const small = pool.alloc(10 * 1024)
    small.release()
    const large = pool.alloc(500 * 1024)
    assert.isFalse(sameMemory(large.bytes, small.bytes))
    assert.strictEqual(pool.free(), 0, "the small buffer was let go")
    large.release()
    const huge = pool.alloc(2 * 1024 * 1024)
    assert.strictEqual(pool.free(), 1, "a body over maxBytes leaves the free buffer be")
    huge.release()
    assert.strictEqual(pool.free(), 1, "and is not kept")
    const held = [pool.alloc(1000), pool.alloc(1000), pool.alloc(1000)]
    for (const h of held) h.release()
    assert.strictEqual(pool.free(), 2)
  })
})
