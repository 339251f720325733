/**
 * Links shared by the processes of one file (executable selection) when the first process's attach is cut short:
 * a short-lived process exits while its attach is still making the file's links, which interrupts that attach. The
 * next process of the file must make them afresh, not wait forever for links nobody is making any more.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"

const Event = Binary.struct({ pid: Binary.u32 })

const Ssl = Probe.instrument({
  name: "test/ssl-shared",
  object: Probe.objectFile("test_ssl_shared"),
  manifest: {
    library: { sharedObject: "libssl.so.3" },
    symbols: [{ name: "SSL_write", entry: "uprobe_SSL_write" }]
  },
  perTarget: { layout: Binary.struct({ on: Binary.u8 }), value: () => ({ on: 1 }) },
  record: Binary.schema(Event),
  instruments: {},
  signals: () => {}
})

const target = (pid: number) =>
  ProbeTest.target({
    pid,
    exe: "/usr/bin/curl",
    file: "8:1",
    language: "native",
    selection: "executable",
    libraries: [{ name: "libssl.so.3", version: "3.0.0", file: "2049:77", symbols: { SSL_write: 0x3a000 } }]
  })

describe("Attacher: links shared by a file", () => {
  it.live("an attach interrupted while making the file's links leaves nothing for the next process to wait on", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const ssl = yield* Ssl.tag
      // The first process's attach hangs in the kernel until its process "exits" (the fiber is interrupted).
      yield* kernel.hangAttach({ program: "uprobe_SSL_write" })
      const first = yield* Scope.make()
      const fiber = yield* Effect.forkChild(ssl.attacher.attach(target(1)).pipe(Scope.provide(first)))
      yield* Effect.sleep("50 millis")
      yield* Fiber.interrupt(fiber)
      yield* Scope.close(first, Exit.void)
      yield* kernel.clearFailures

      const second = yield* Scope.make()
      const attached = yield* ssl.attacher.attach(target(2)).pipe(
        Scope.provide(second),
        Effect.timeoutOption("2 seconds")
      )
      assert.isTrue(Option.isSome(attached), "the second process of the file was attached")
      assert.deepStrictEqual(
        (yield* kernel.liveLinks).map((l) => [l.program, l.binary, l.pid]),
        [["uprobe_SSL_write", "/usr/lib/x86_64-linux-gnu/libssl.so.3", undefined]]
      )
      yield* Scope.close(second, Exit.void)
    }).pipe(Effect.provide(Ssl.layer.pipe(Layer.provideMerge(ProbeTest.layer))), Effect.scoped))
})
