import { assert, describe, layer } from "@effect/vitest"
import { spawn } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { ConfigProvider, Effect, Exit, Fiber, Layer, Option, Scope, Stream } from "effect"
import { DoctorEvent } from "../../src/cli/Doctor.ts"
import { Bpf, type BpfObject } from "../../src/kernel/Bpf.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { loadAddon } from "../../src/kernel/internal/addon.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import { bpfObject, btfLinkCreateLayout, buildAll, buildRoundtrip, deadPid, type Roundtrip, startRoundtrip } from "./fixtures.ts"

buildAll()
const binary = buildRoundtrip()
const symbol = "main.roundtripTarget"


const u32 = (n: number) => {
  const b = new Uint8Array(4)
  new DataView(b.buffer).setUint32(0, n, true)
  return b
}
const u64 = (n: bigint) => {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, n, true)
  return b
}

const withRoundtrip = <A, E, R>(f: (rt: Roundtrip) => Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(Effect.promise(() => startRoundtrip(binary)), f, (rt) => Effect.sync(() => rt.stop()))

const collect = (records: Stream.Stream<Uint8Array>, n: number) =>
  records.pipe(Stream.take(n), Stream.runCollect, Effect.timeout("10 seconds"), Effect.map((c) => Array.from(c)))

layer(BpfLive.layer, { excludeTestServices: true })("BpfLive (kernel)", (it) => {
  it.effect("reports libbpf's version", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      assert.match(bpf.libbpfVersion, /^1\.\d+$/)
    }))

  it.effect("uprobe by symbol delivers records with the payload and the constant set at load", () =>
    withRoundtrip((rt) =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const obj = yield* bpf.load({ file: bpfObject("doctor"), constants: { doctor_cookie: 0xc0ffeen } })
        assert.deepStrictEqual(obj.programs, ["doctor_uprobe"])
        assert.include(obj.maps, "events")
        const link = yield* obj.attachUprobe({ program: "doctor_uprobe", binary, symbol, pid: rt.pid })
        assert.isAbove(link.id, 0)
        const rb = yield* obj.ringBuffer("events")
        const fiber = yield* collect(rb.records, 3).pipe(Effect.forkChild)
        yield* Effect.promise(() => rt.call(3, 42))
        const events = (yield* Fiber.join(fiber)).map((r) => DoctorEvent.decode(r))
        assert.strictEqual(events.length, 3)
        for (const e of events) {
          assert.strictEqual(e.tgid, rt.pid)
          assert.strictEqual(e.arg1, 42n)
          assert.strictEqual(e.cookie, 0xc0ffeen)
        }
        const stats = yield* rb.stats
        assert.strictEqual(stats.received, 3)
        assert.strictEqual(stats.dropped, 0)
      }).pipe(Effect.scoped)
    ))

  it.effect("uprobe by absolute file offset, every process of the binary", () =>
    withRoundtrip((rt) =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const analysed = yield* GoBinary.analyzeBuffer(binary, readFileSync(binary))
        const offset = Option.getOrThrow(analysed.function(symbol)).fileOffset
        const obj = yield* bpf.load({ file: bpfObject("doctor"), constants: { doctor_cookie: 7 } })
        yield* obj.attachUprobe({ program: "doctor_uprobe", binary, offset })
        const rb = yield* obj.ringBuffer("events")
        const fiber = yield* collect(rb.records, 2).pipe(Effect.forkChild)
        yield* Effect.promise(() => rt.call(2, 1234))
        const events = (yield* Fiber.join(fiber)).map((r) => DoctorEvent.decode(r))
        assert.deepStrictEqual(events.map((e) => [e.tgid, e.arg1, e.cookie]), [[rt.pid, 1234n, 7n], [rt.pid, 1234n, 7n]])
      }).pipe(Effect.scoped)
    ))

  it.effect("a consumer that cannot keep up loses records to the bounded buffer, counted in stats.dropped", () =>
    withRoundtrip((rt) =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const obj = yield* bpf.load({ file: bpfObject("doctor") })
        yield* obj.attachUprobe({ program: "doctor_uprobe", binary, symbol, pid: rt.pid })
        const rb = yield* obj.ringBuffer("events", { capacity: 8 })
        yield* Effect.promise(() => rt.call(100, 5))
        // Nobody reads yet: wait for the drain timer to move everything out of the kernel ring.
        let stats = yield* rb.stats
        for (let i = 0; i < 200 && stats.received < 100; i++) {
          yield* Effect.sleep("10 millis")
          stats = yield* rb.stats
        }
        assert.strictEqual(stats.received, 100)
        assert.strictEqual(stats.dropped, 92)
        const kept = yield* collect(rb.records, 8)
        assert.strictEqual(kept.length, 8)
        assert.strictEqual(DoctorEvent.decode(kept[0]!).arg1, 5n)
      }).pipe(Effect.scoped)
    ))

  it.effect("map update, lookup and delete; wrong key size is a BpfMapError", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const obj = yield* bpf.load({ file: bpfObject("maps") })
      assert.isTrue(Option.isNone(yield* obj.lookup("shared", u32(1))))
      yield* obj.update("shared", u32(1), u64(99n))
      const found = yield* obj.lookup("shared", u32(1))
      assert.deepStrictEqual(Option.map(found, (b) => Buffer.from(b).readBigUInt64LE(0)), Option.some(99n))
      assert.isTrue(yield* obj.delete("shared", u32(1)))
      assert.isFalse(yield* obj.delete("shared", u32(1)))
      const error = yield* obj.lookup("shared", u64(1n)).pipe(Effect.flip)
      assert.strictEqual(error._tag, "BpfMapError")
      assert.strictEqual(error.map, "shared")
      assert.strictEqual(error.code, "EINVAL")
      assert.match(error.message, /^lookup: shared: .*\(EINVAL\)/)
      const missing = yield* obj.update("nope", u32(1), u64(1n)).pipe(Effect.flip)
      assert.strictEqual(missing._tag, "BpfMapError")
      assert.match(missing.message, /no map nope in maps/)
    }).pipe(Effect.scoped))

  it.effect("btf(structs) describes only the structs named, with every map's value struct", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const file = Probe.objectFile("nethttp_server")
      const obj = yield* bpf.load({ file, name: "nethttp_server", uprobeMulti: true })
      const all = Option.getOrThrow(yield* obj.btf())
      const some = Option.getOrThrow(yield* obj.btf(["nethttp_server_record", "no_such_struct"]))
      // Every struct of the object (records, per-target values, map keys and values, Go's headers; no kernel
      // struct since its programs read none through CO-RE): what a restricted read leaves out.
      assert.isAbove(Object.keys(all.structs).length, 10)
      assert.include(Object.keys(all.structs), "ps_file_key")
      assert.deepStrictEqual(Object.keys(some.structs), ["nethttp_server_record"])
      assert.deepStrictEqual(some.structs["nethttp_server_record"], all.structs["nethttp_server_record"])
      assert.deepStrictEqual(some.mapValues, all.mapValues)
      assert.strictEqual(some.mapValues["ps_targets"], "nethttp_server_offsets")
      assert.deepStrictEqual(Object.keys(Option.getOrThrow(yield* obj.btf([])).structs), [])
    }).pipe(Effect.scoped))

  it.effect("two objects share one map through reuseMaps", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const owner = yield* bpf.load({ file: bpfObject("maps"), name: "maps_owner" })
      const ref = yield* owner.mapRef("shared")
      assert.strictEqual(ref.object, "maps_owner")
      const user = yield* bpf.load({ file: bpfObject("maps"), name: "maps_user", reuseMaps: { shared: ref } })
      yield* owner.update("shared", u32(3), u64(0xabcn))
      const seen = yield* user.lookup("shared", u32(3))
      assert.deepStrictEqual(Option.map(seen, (b) => Buffer.from(b).readBigUInt64LE(0)), Option.some(0xabcn))
      assert.isTrue(yield* user.delete("shared", u32(3)))
      assert.isTrue(Option.isNone(yield* owner.lookup("shared", u32(3))))
      const bad = yield* owner.mapRef("nope").pipe(Effect.flip)
      assert.strictEqual(bad._tag, "BpfMapError")
      assert.strictEqual(bad.message, "mapRef: no map nope in maps_owner")
    }).pipe(Effect.scoped))

  describe("errors", () => {
    it.effect("missing object file is a BpfOpenError ENOENT", () =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const error = yield* bpf.load({ file: "/nonexistent/x.bpf.o" }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "BpfOpenError")
        if (error._tag !== "BpfOpenError") return
        assert.strictEqual(error.code, "ENOENT")
        assert.strictEqual(error.errno, 2)
        assert.strictEqual(error.source, "/nonexistent/x.bpf.o")
        assert.match(error.message, /^open: \/nonexistent\/x\.bpf\.o: No such file or directory \(ENOENT\)/)
      }).pipe(Effect.scoped))

    it.effect("a file that is not an ELF object is a BpfOpenError", () =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const file = path.join(os.tmpdir(), `probescope-not-elf-${process.pid}.o`)
        writeFileSync(file, "definitely not an ELF file\n")
        const error = yield* bpf.load({ file }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "BpfOpenError")
        assert.strictEqual(error.code, "LIBBPF_ERRNO__FORMAT")
        assert.match(error.message, /BPF object format invalid/)
        const fromBytes = yield* bpf.load({ bytes: new Uint8Array([1, 2, 3]), name: "junk" }).pipe(Effect.flip)
        assert.strictEqual(fromBytes._tag, "BpfOpenError")
        assert.match(fromBytes.message, /^open: <3 bytes>: /)
      }).pipe(Effect.scoped))

    it.effect("an unknown constant or a value of the wrong size is a BpfMapError", () =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const unknown = yield* bpf.load({ file: bpfObject("doctor"), constants: { nope: 1 } }).pipe(Effect.flip)
        assert.strictEqual(unknown._tag, "BpfMapError")
        assert.strictEqual(unknown.message, "setConstant: no constant nope in doctor")
        const tooBig = yield* bpf.load({ file: bpfObject("doctor"), constants: { doctor_cookie: new Uint8Array(4) } })
          .pipe(Effect.flip)
        assert.strictEqual(tooBig._tag, "BpfMapError")
        assert.strictEqual(tooBig.message, "setConstant: constant doctor_cookie is 8 bytes, got 4 bytes")
      }).pipe(Effect.scoped))

    it.effect("a verifier rejection is a BpfLoadError with the verifier log", () =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const error = yield* bpf.load({ file: bpfObject("bad") }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "BpfLoadError")
        if (error._tag !== "BpfLoadError") return
        assert.strictEqual(error.object, "bad")
        assert.match(error.verifierLog, /invalid mem access 'map_value_or_null'/)
        assert.match(error.message, /^load: bad: .* verifier rejected the program: R0 invalid mem access/)
      }).pipe(Effect.scoped))

    it.effect("disabling the rejected program lets the object load", () =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const obj = yield* bpf.load({ file: bpfObject("bad"), disablePrograms: ["bad_uprobe"] })
        assert.deepStrictEqual(obj.programs, [])
        const error = yield* bpf.load({ file: bpfObject("bad"), disablePrograms: ["nope"] }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "BpfLoadError")
        assert.match(error.message, /no program nope in bad/)
      }).pipe(Effect.scoped))

    it.effect("attach errors name the program and say what is wrong", () =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const obj = yield* bpf.load({ file: bpfObject("doctor") })
        const noSymbol = yield* obj.attachUprobe({ program: "doctor_uprobe", binary, symbol: "main.nope" })
          .pipe(Effect.flip)
        assert.strictEqual(noSymbol._tag, "BpfAttachError")
        if (noSymbol._tag !== "BpfAttachError") return
        assert.strictEqual(noSymbol.program, "doctor_uprobe")
        assert.strictEqual(noSymbol.target, `${binary}:main.nope`)
        assert.match(noSymbol.message, /symbol main\.nope not found in /)

        const pid = deadPid()
        const noPid = yield* obj.attachUprobe({ program: "doctor_uprobe", binary, symbol, pid }).pipe(Effect.flip)
        assert.strictEqual(noPid._tag, "BpfAttachError")
        assert.strictEqual(noPid.code, "ESRCH")
        assert.match(noPid.message, new RegExp(`process ${pid} does not exist`))

        const noBinary = yield* obj.attachUprobe({ program: "doctor_uprobe", binary: "/nonexistent/bin", symbol })
          .pipe(Effect.flip)
        assert.strictEqual(noBinary._tag, "BpfAttachError")
        assert.match(noBinary.message, /binary \/nonexistent\/bin does not exist/)

        const noProgram = yield* obj.attachUprobe({ program: "nope", binary, symbol }).pipe(Effect.flip)
        assert.strictEqual(noProgram._tag, "BpfAttachError")
        assert.match(noProgram.message, /no program nope in doctor/)
      }).pipe(Effect.scoped))
  })

  describe("uprobe_multi and off-thread link work", () => {
    it.effect("the BPF_LINK_CREATE layout the addon writes matches the running kernel's BTF", () =>
      Effect.sync(() => {
        const addon = loadAddon()
        if (typeof addon === "string") throw new Error(addon)
        const layout = addon.uprobeMultiLayout()
        const kernel = btfLinkCreateLayout()
        assert.deepStrictEqual(layout.fields, kernel.fields)
        assert.strictEqual(layout.attachType, kernel.uprobeMultiAttachType)
      }))

    it.effect("one link carries every offset of a program for one pid, and is gone when the scope closes", () =>
      withRoundtrip((rt) =>
        Effect.gen(function*() {
          const bpf = yield* Bpf
          assert.isTrue(bpf.uprobeMulti)
          const analysed = yield* GoBinary.analyzeBuffer(binary, readFileSync(binary))
          const fn = Option.getOrThrow(analysed.function(symbol))
          const scope = yield* Scope.make()
          const obj = yield* bpf.load({ file: bpfObject("doctor"), uprobeMulti: true }).pipe(Scope.provide(scope))
          // Entry and every RET: each call hits two of them.
          const offsets = [fn.entryOffset, ...fn.returnOffsets]
          const link = yield* obj.attachUprobe({ program: "doctor_uprobe", binary, offsets, pid: rt.pid }).pipe(
            Scope.provide(scope)
          )
          assert.strictEqual(link.kernelLinks, 1)
          const rb = yield* obj.ringBuffer("events").pipe(Scope.provide(scope))
          const fiber = yield* collect(rb.records, 4).pipe(Effect.forkChild)
          yield* Effect.promise(() => rt.call(2, 99))
          const events = (yield* Fiber.join(fiber)).map((r) => DoctorEvent.decode(r))
          assert.deepStrictEqual(events.map((e) => [e.tgid, e.arg1]).slice(0, 1), [[rt.pid, 99n]])
          const live = yield* Effect.promise(() => BpfLive.kernelObjects())
          assert.strictEqual(live.links.find((l) => l.id === link.id)?.type, "uprobe_multi")
          assert.strictEqual(live.links.filter((l) => l.progId === live.links.find((k) => k.id === link.id)?.progId).length, 1)
          yield* Scope.close(scope, Exit.void)
          const after = yield* Effect.promise(() => BpfLive.kernelObjects())
          assert.isFalse(after.links.some((l) => l.id === link.id))
        })
      ))

    it.effect("a link for every process of the file traps a process started after it", () =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const analysed = yield* GoBinary.analyzeBuffer(binary, readFileSync(binary))
        const fn = Option.getOrThrow(analysed.function(symbol))
        const obj = yield* bpf.load({ file: bpfObject("doctor"), uprobeMulti: true })
        yield* obj.attachUprobe({ program: "doctor_uprobe", binary, offsets: [fn.entryOffset] })
        const rb = yield* obj.ringBuffer("events")
        const rt = yield* Effect.acquireRelease(Effect.promise(() => startRoundtrip(binary)), (r) =>
          Effect.sync(() => r.stop()))
        const fiber = yield* collect(rb.records, 1).pipe(Effect.forkChild)
        yield* Effect.promise(() => rt.call(1, 5))
        assert.deepStrictEqual((yield* Fiber.join(fiber)).map((r) => DoctorEvent.decode(r).tgid), [rt.pid])
      }).pipe(Effect.scoped))

    it.effect("a missing binary is a BpfAttachError that says so", () =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const obj = yield* bpf.load({ file: bpfObject("doctor"), uprobeMulti: true })
        const error = yield* Effect.flip(
          obj.attachUprobe({ program: "doctor_uprobe", binary: "/nonexistent/app", offsets: [0x1000] })
        )
        assert.strictEqual(error._tag, "BpfAttachError")
        assert.strictEqual(
          error.message,
          "attachUprobeMulti: doctor_uprobe -> /nonexistent/app (1 offsets) pid 0: No such file or directory (ENOENT): " +
            "binary /nonexistent/app does not exist"
        )
      }).pipe(Effect.scoped))

    it.effect("closing a ring reads the records still below the wakeup threshold", () =>
      withRoundtrip((rt) =>
        Effect.gen(function*() {
          const bpf = yield* Bpf
          const obj = yield* bpf.load({ file: bpfObject("doctor") })
          yield* obj.attachUprobe({ program: "doctor_uprobe", binary, symbol, pid: rt.pid })
          const rb = yield* obj.ringBuffer("events")
          yield* Effect.promise(() => rt.call(3, 8))
          // The drain timer is 10 s here: only `close` can hand these over.
          const fiber = yield* rb.records.pipe(Stream.runCollect, Effect.forkChild)
          yield* Effect.yieldNow
          yield* rb.close
          const got = Array.from(yield* Fiber.join(fiber)).map((r) => DoctorEvent.decode(r).arg1)
          assert.deepStrictEqual(got, [8n, 8n, 8n])
        }).pipe(Effect.scoped)
      ).pipe(Effect.provide(Layer.fresh(BpfLive.layer).pipe(
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ PROBESCOPE_RINGBUF_DRAIN_MS: "1000" })))
      ))))

    it.effect("PROBESCOPE_RINGBUF_WAKEUP_BYTES=0: a record into a quiet ring wakes the reader at once, the rest of a burst come by the window's end; forEachBatch gets them in place", () =>
      withRoundtrip((rt) =>
        Effect.gen(function*() {
          const bpf = yield* Bpf
          const obj = yield* bpf.load({ file: bpfObject("doctor") })
          yield* obj.attachUprobe({ program: "doctor_uprobe", binary, symbol, pid: rt.pid })
          const rb = yield* obj.ringBuffer("events")
          const got: Array<bigint> = []
          const fiber = yield* rb.forEachBatch((batch) => {
            for (let i = 0; i < batch.count; i++) {
              const at = batch.offsets[2 * i]!
              got.push(DoctorEvent.decode(batch.data.subarray(at, at + batch.offsets[2 * i + 1]!)).arg1)
            }
          }).pipe(Effect.forkChild)
          // The reader's first drain (the one made when the threshold is set) finds the ring empty: it must not hold
          // back the next records' wakeup for a window (drain_ms, 1 s here).
          yield* Effect.sleep("50 millis")
          yield* Effect.promise(() => rt.call(3, 9))
          // No ticks at threshold 0, and the window (drain_ms) is 1 s here: only a wakeup delivers within half a second.
          for (let i = 0; i < 50 && got.length < 1; i++) yield* Effect.sleep("10 millis")
          assert.isAtLeast(got.length, 1, "the first record, by its wakeup")
          // Records that came after a drain delivered, within its window, are drained at the window's end.
          for (let i = 0; i < 300 && got.length < 3; i++) yield* Effect.sleep("10 millis")
          assert.deepStrictEqual(got, [9n, 9n, 9n])
          yield* rb.close
          yield* Fiber.join(fiber)
        }).pipe(Effect.scoped)
      ).pipe(Effect.provide(Layer.fresh(BpfLive.layer).pipe(
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
          PROBESCOPE_RINGBUF_DRAIN_MS: "1000",
          PROBESCOPE_RINGBUF_WAKEUP_BYTES: "0"
        })))
      ))))

    it.effect("PROBESCOPE_RINGBUF_WAKEUP_BYTES must be bytes from 0 to 1 GiB", () =>
      Effect.gen(function*() {
        for (const bad of ["abc", "-1", "2G", "1.5K"]) {
          const error = yield* Effect.flip(Layer.build(Layer.fresh(BpfLive.layer).pipe(
            Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ PROBESCOPE_RINGBUF_WAKEUP_BYTES: bad })))
          )))
          assert.strictEqual(error._tag, "BpfConfigError")
          assert.strictEqual(
            error.message,
            `Invalid PROBESCOPE_RINGBUF_WAKEUP_BYTES=${JSON.stringify(bad)}: expected bytes from 0 to 1073741824 ` +
              `(K and M suffixes allowed, e.g. 64K)`
          )
        }
      }).pipe(Effect.scoped))

    it.effect("PROBESCOPE_RINGBUF_DRAIN_MS must be whole milliseconds from 1 to 1000", () =>
      Effect.gen(function*() {
        for (const bad of ["0", "abc", "-5", "2.5", "1001"]) {
          const error = yield* Effect.flip(Layer.build(Layer.fresh(BpfLive.layer).pipe(
            Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ PROBESCOPE_RINGBUF_DRAIN_MS: bad })))
          )))
          assert.strictEqual(error._tag, "BpfConfigError")
          assert.strictEqual(
            error.message,
            `Invalid PROBESCOPE_RINGBUF_DRAIN_MS=${JSON.stringify(bad)}: expected whole milliseconds from 1 to 1000`
          )
        }
      }).pipe(Effect.scoped))
  })

  describe("ring buffer size", () => {
    /** A map's max_entries, from its fd's fdinfo (the ring's size in bytes for a ring buffer). */
    const maxEntries = (fd: number) => Number(/max_entries:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))![1])
    const ringFd = (obj: BpfObject) => Effect.map(obj.mapRef("events"), (ref) => (ref.handle as { readonly fd: number }).fd)

    it.effect("the C file's size by default; PROBESCOPE_RINGBUF_BYTES for every ring; a load's mapSizes for one", () =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const defaults = yield* bpf.load({ file: bpfObject("doctor") })
        assert.strictEqual(maxEntries(yield* ringFd(defaults)), 1 << 20)
        const sized = yield* Effect.gen(function*() {
          const sizing = yield* Bpf
          const agentWide = yield* sizing.load({ file: bpfObject("doctor") })
          const own = yield* sizing.load({ file: bpfObject("doctor"), mapSizes: { events: 16384 } })
          return [maxEntries(yield* ringFd(agentWide)), maxEntries(yield* ringFd(own))]
        }).pipe(Effect.provide(Layer.fresh(BpfLive.layer).pipe(
          Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ PROBESCOPE_RINGBUF_BYTES: "256K" })))
        )))
        assert.deepStrictEqual(sized, [262144, 16384])
      }).pipe(Effect.scoped))

    it.effect("a ring smaller than the default wakeup threshold wakes its reader at a quarter of its size", () =>
      withRoundtrip((rt) =>
        Effect.gen(function*() {
          const bpf = yield* Bpf
          // 16 KiB: the 256 KiB default could never be reached, and every record would wait for the drain timer.
          const obj = yield* bpf.load({ file: bpfObject("doctor"), mapSizes: { events: 16384 } })
          yield* obj.attachUprobe({ program: "doctor_uprobe", binary, symbol, pid: rt.pid })
          const rb = yield* obj.ringBuffer("events")
          let got = 0
          const fiber = yield* rb.forEachBatch((batch) => void (got += batch.count)).pipe(Effect.forkChild)
          yield* Effect.sleep("50 millis")
          // 300 records of 40 bytes in the ring (12 000 of its 16 384): the 4 096-byte threshold is crossed about
          // every 103. The timer's first tick is 1 s after the ring opened, so what arrives before it came by a wakeup.
          yield* Effect.promise(() => rt.call(300, 6))
          for (let i = 0; i < 40 && got < 100; i++) yield* Effect.sleep("10 millis")
          assert.isAtLeast(got, 100, "records delivered by the threshold's wakeup, before the first timer tick")
          yield* rb.close
          yield* Fiber.join(fiber)
          assert.strictEqual(got, 300)
          assert.strictEqual((yield* rb.stats).dropped, 0)
        }).pipe(Effect.scoped)
      ).pipe(Effect.provide(Layer.fresh(BpfLive.layer).pipe(
        Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ PROBESCOPE_RINGBUF_DRAIN_MS: "1000" })))
      ))))

    it.effect("PROBESCOPE_RINGBUF_BYTES must be a power of two from 4096 to 1 GiB", () =>
      Effect.gen(function*() {
        for (const bad of ["0", "1000", "2048", "3M", "abc", "2G", "-4096"]) {
          const error = yield* Effect.flip(Layer.build(Layer.fresh(BpfLive.layer).pipe(
            Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ PROBESCOPE_RINGBUF_BYTES: bad })))
          )))
          assert.strictEqual(error._tag, "BpfConfigError")
          assert.strictEqual(
            error.message,
            `Invalid PROBESCOPE_RINGBUF_BYTES=${JSON.stringify(bad)}: expected a power of two from 4096 to 1073741824 ` +
              `bytes (K and M suffixes allowed, e.g. 512K, 4M)`
          )
        }
      }).pipe(Effect.scoped))
  })

  describe("cleanup", () => {
    it.effect("closing the scope detaches links, stops the ring and unloads programs", () =>
      withRoundtrip((rt) =>
        Effect.gen(function*() {
          const bpf = yield* Bpf
          const before = BpfLive.ownBpfFds()
          const scope = yield* Scope.make()
          const link = yield* Effect.gen(function*() {
            const obj = yield* bpf.load({ file: bpfObject("doctor") })
            const link = yield* obj.attachUprobe({ program: "doctor_uprobe", binary, symbol, pid: rt.pid })
            const rb = yield* obj.ringBuffer("events")
            const fiber = yield* collect(rb.records, 1).pipe(Effect.forkChild)
            yield* Effect.promise(() => rt.call(1, 1))
            assert.strictEqual((yield* Fiber.join(fiber)).length, 1)
            return link
          }).pipe(Scope.provide(scope))
          const live = yield* Effect.promise(() => BpfLive.kernelObjects())
          const progId = live.links.find((l) => l.id === link.id)?.progId
          assert.isDefined(progId)
          assert.isAbove(BpfLive.ownBpfFds().progs, before.progs)
          yield* Scope.close(scope, Exit.void)
          assert.deepStrictEqual(BpfLive.ownBpfFds(), before)
          const after = yield* Effect.promise(() => BpfLive.kernelObjects())
          assert.isFalse(after.links.some((l) => l.id === link.id))
          assert.isFalse(after.programs.some((p) => p.id === progId))
        })
      ))

    it.effect("interrupting a fiber mid-stream leaves nothing behind", () =>
      withRoundtrip((rt) =>
        Effect.gen(function*() {
          const bpf = yield* Bpf
          const before = BpfLive.ownBpfFds()
          let seen = 0
          const fiber = yield* Effect.gen(function*() {
            const obj = yield* bpf.load({ file: bpfObject("doctor") })
            yield* obj.attachUprobe({ program: "doctor_uprobe", binary, symbol, pid: rt.pid })
            const rb = yield* obj.ringBuffer("events")
            yield* rb.records.pipe(Stream.runForEach(() => Effect.sync(() => void seen++)))
          }).pipe(Effect.scoped, Effect.forkChild)
          for (let i = 0; i < 100 && seen < 10; i++) {
            yield* Effect.promise(() => rt.call(5, 2))
            yield* Effect.sleep("10 millis")
          }
          assert.isAtLeast(seen, 10)
          yield* Fiber.interrupt(fiber)
          assert.deepStrictEqual(BpfLive.ownBpfFds(), before)
        })
      ))
  })

  describe("tracepoints", () => {
    it.effect("sched:sched_process_exec via perf tracepoint, raw_tp and tp_btf", () =>
      Effect.gen(function*() {
        const bpf = yield* Bpf
        const obj = yield* bpf.load({ file: bpfObject("exec") })
        const links = yield* Effect.forEach(["exec_tp", "exec_raw_tp", "exec_tp_btf"], (program) =>
          obj.attachTracepoint({ program, category: "sched", name: "sched_process_exec" }))
        assert.deepStrictEqual(links.map((l) => l.description), [
          "tracepoint sched:sched_process_exec",
          "raw_tracepoint sched:sched_process_exec",
          "tracing sched:sched_process_exec"
        ])
        const rb = yield* obj.ringBuffer("events")
        const child = spawn("/bin/true")
        const kinds = new Set<number>()
        yield* rb.records.pipe(
          Stream.map((r) => Buffer.from(r)),
          Stream.filter((r) => r.readUInt32LE(0) === child.pid),
          Stream.take(3),
          Stream.runForEach((r) => Effect.sync(() => void kinds.add(r.readUInt32LE(4)))),
          Effect.timeout("10 seconds")
        )
        assert.deepStrictEqual([...kinds].sort(), [1, 2, 3])
        const bad = yield* obj.attachTracepoint({ program: "exec_tp", category: "sched", name: "no_such_event" })
          .pipe(Effect.flip)
        assert.strictEqual(bad._tag, "BpfAttachError")
        assert.match(bad.message, /no tracepoint sched:no_such_event/)
      }).pipe(Effect.scoped))
  })
})
