/**
 * The loader's pieces the maps made ahead rely on (src/probe/internal/loader.ts): `memo` makes a thing once whoever
 * asks first and gives everyone its outcome, a failure included, even when the first asker is interrupted; `start`
 * sets a load going without waiting for it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { loadOnce, memo } from "../../src/probe/internal/loader.ts"
import type { LoadedState } from "../../src/probe/internal/loader.ts"
import { ProbeLoadError } from "../../src/probe/ProbeError.ts"

describe("loader", () => {
  it.effect("memo runs once and gives every caller the same value", () =>
    Effect.gen(function*() {
      let runs = 0
      const made = memo(Effect.sync(() => ({ n: ++runs })))
      const [a, b] = yield* Effect.all([made, made], { concurrency: 2 })
      const c = yield* made
      assert.strictEqual(runs, 1)
      assert.strictEqual(a, b)
      assert.strictEqual(a, c)
    }))

  it.effect("memo gives every caller the failure, without running again", () =>
    Effect.gen(function*() {
      let runs = 0
      const made = memo(Effect.suspend(() => {
        runs++
        return Effect.fail(new ProbeLoadError({ probe: "p", reason: "r", message: "no maps", verifierLog: "" }))
      }))
      const first = yield* Effect.flip(made)
      const second = yield* Effect.flip(made)
      assert.strictEqual(runs, 1)
      assert.strictEqual(first.message, "no maps")
      assert.strictEqual(second, first)
    }))

  it.effect("memo finishes its work when the first caller is interrupted, and the next caller gets the value", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      let runs = 0
      const made = memo(Effect.andThen(Deferred.await(gate), Effect.sync(() => ++runs)))
      const first = yield* Effect.forkChild(made)
      yield* Effect.yieldNow
      const interrupted = yield* Effect.forkChild(Fiber.interrupt(first))
      yield* Effect.yieldNow
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(interrupted)
      assert.strictEqual(yield* made, 1)
      assert.strictEqual(runs, 1)
    }))

  it.effect("start sets the load going without waiting for it; get then waits for that same load", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const gate = yield* Deferred.make<void>()
      let loads = 0
      const state = {} as LoadedState
      const once = loadOnce(Effect.andThen(Deferred.await(gate), Effect.sync(() => (loads++, state))), scope)
      yield* once.start
      assert.strictEqual(once.status(), "loading")
      yield* once.start
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* once.get, state)
      assert.strictEqual(loads, 1)
      assert.strictEqual(once.status(), "loaded")
      yield* Scope.close(scope, Exit.void)
    }))
})
