/**
 * Maps created ahead of any load (`Bpf.createMaps`): the object that defines them and the objects that share them all
 * take them through `reuseMaps`, so they can be verified side by side instead of each waiting for its dependency's
 * load. On the running kernel: the objects really share one map (a value written through one object's map is read
 * through the other's), the maps' fds close with their scope while an object that reuses one keeps it, and a failure
 * leaves no map behind.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import { Bpf, BpfMapError } from "../../src/kernel/Bpf.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { bpfObject, buildAll } from "./fixtures.ts"

buildAll()

const SHARED = ["go_spans", "ps_conn_spans", "ps_ctx_spans"]
const key = new Uint8Array(16).fill(7)
const value = Uint8Array.from({ length: 32 }, (_, i) => i + 1)

layer(BpfLive.layer, { excludeTestServices: true })("Bpf.createMaps (kernel)", (it) => {
  it.effect("the owner and a dependent loaded side by side share the maps made before either", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const before = BpfLive.ownBpfFds().maps
      const refs = yield* bpf.createMaps({ file: bpfObject("go_context"), maps: SHARED })
      assert.deepStrictEqual(Object.keys(refs).sort(), [...SHARED].sort())
      assert.strictEqual(refs["go_spans"]!.object, "go_context")
      assert.strictEqual(BpfLive.ownBpfFds().maps, before + 3)
      const [owner, dependent] = yield* Effect.all([
        bpf.load({ file: bpfObject("go_context"), reuseMaps: refs }),
        bpf.load({ file: bpfObject("nethttp_server"), reuseMaps: refs })
      ], { concurrency: 2 })
      yield* owner.update("go_spans", key, value)
      const read = yield* dependent.lookup("go_spans", key)
      assert.deepStrictEqual(Option.map(read, (b) => Array.from(b)), Option.some(Array.from(value)))
      assert.isTrue(yield* dependent.delete("go_spans", key))
      assert.isTrue(Option.isNone(yield* owner.lookup("go_spans", key)))
    }).pipe(Effect.scoped))

  it.effect("the maps' own fds close with their scope; an object that reuses one keeps the map", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const before = BpfLive.ownBpfFds().maps
      const made = yield* Scope.make()
      const refs = yield* bpf.createMaps({ file: bpfObject("go_context"), maps: ["go_spans"] }).pipe(
        Scope.provide(made)
      )
      const obj = yield* bpf.load({ file: bpfObject("go_context"), reuseMaps: refs })
      const withObject = BpfLive.ownBpfFds().maps
      yield* Scope.close(made, Exit.void)
      assert.strictEqual(BpfLive.ownBpfFds().maps, withObject - 1)
      yield* obj.update("go_spans", key, value)
      assert.isTrue(Option.isSome(yield* obj.lookup("go_spans", key)))
      assert.isAbove(withObject, before)
    }).pipe(Effect.scoped))

  it.effect("an unknown map fails with BpfMapError naming it, and leaves no map open", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const before = BpfLive.ownBpfFds().maps
      const error = yield* Effect.flip(
        Effect.scoped(bpf.createMaps({ file: bpfObject("go_context"), maps: ["go_spans", "no_such_map"] }))
      )
      assert.instanceOf(error, BpfMapError)
      assert.strictEqual(error.code, "ENOENT")
      assert.strictEqual(error.op, "createMaps")
      assert.include(error.message, `createMaps: no map no_such_map in ${bpfObject("go_context")}`)
      assert.strictEqual(BpfLive.ownBpfFds().maps, before)
    }))
})
