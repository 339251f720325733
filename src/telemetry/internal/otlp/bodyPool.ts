/**
 * Request bodies reused from one request to the next.
 *
 * Why: a batch of 2048 spans is a body of ~0.8 MiB, above the C allocator's mmap threshold, so a fresh body was a new
 * mapping that the copy into it faulted in page by page and that was unmapped again when V8 let the Buffer go: ~200
 * page faults a request, ~930 a second at 10k spans/s, each ~1.8 µs on a KVM guest (about a twentieth of the agent's
 * CPU there). A body written into memory it already wrote costs the copy alone.
 *
 * A body may be reused only when nobody reads it any more: the batcher (which may send it again, on a retry) and
 * every attempt that handed it to a socket. Each holds the lease and ends its hold when done; an attempt whose bytes
 * were never confirmed written (a request cut off mid-write) never ends its hold, and that body is left to the
 * garbage collector instead of coming back. So the pool can only ever miss a reuse, never hand out bytes still read.
 */

export interface Lease {
  /** The body: exactly the size asked for, a view of the pooled buffer. */
  readonly bytes: Buffer
  /** Ends the first holder's hold (the one `alloc` made). Once; later calls do nothing. */
  readonly release: () => void
  /** One more holder; the function returned ends that hold (once; later calls do nothing). */
  readonly hold: () => () => void
}

export interface BodyPool {
  /** A body of `size` bytes (its content is whatever was there), with one holder. */
  readonly alloc: (size: number) => Lease
  /** Buffers free for reuse now (tests). */
  readonly free: () => number
}

/** Capacities are multiples of this, with an eighth more than asked: bodies of one workload vary a little. */
const GRANULE = 64 * 1024

/**
 * `keep` free buffers at most, none larger than `maxBytes` (a larger body is allocated and let go as before). Two:
 * the batcher ships one batch at a time, and a flush may run one more beside it.
 */
export const make = (options: { readonly keep?: number; readonly maxBytes?: number } = {}): BodyPool => {
  const keep = options.keep ?? 2
  const maxBytes = options.maxBytes ?? 4 * 1024 * 1024
  const free: Array<Buffer> = []

  const bufferFor = (size: number): Buffer => {
    const capacity = Math.ceil((size + (size >>> 3)) / GRANULE) * GRANULE
    // Too large to keep: made for this body alone, and the free buffers stay for the usual ones.
    if (capacity > maxBytes) return Buffer.allocUnsafeSlow(size)
    // The last free buffer large enough; smaller ones are dropped, so the pool grows to the workload's size.
    while (free.length > 0) {
      const b = free.pop()!
      if (b.length >= size) return b
    }
    return Buffer.allocUnsafeSlow(capacity)
  }

  const alloc = (size: number): Lease => {
    const buffer = bufferFor(size)
    let holders = 1
    // Once back in the pool the buffer is another body's: a hold taken after that (a caller's bug) never returns it
    // a second time.
    let returned = false
    const end = () => {
      if (--holders > 0 || returned) return
      returned = true
      if (buffer.length <= maxBytes && free.length < keep) free.push(buffer)
    }
    const once = () => {
      let ended = false
      return () => {
        if (ended) return
        ended = true
        end()
      }
    }
    return {
      bytes: buffer.subarray(0, size),
      release: once(),
      hold: () => {
        holders++
        return once()
      }
    }
  }

  return { alloc, free: () => free.length }
}
