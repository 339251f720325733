/**
 * The smallest program that stands on what the agent stands on: a service in a layer, a `Schema` decode, a `Stream`,
 * a `Queue`, `Config` read from the environment, run by the Effect runtime, then idle. `bench/footprint.ts` bundles it
 * as the CLI is bundled (esbuild, minified, tree-shaken) and reads its RSS on the agent's node binary: the memory any
 * Effect program costs before it does anything of its own, against which the agent's RSS and #12's 64 MiB are read.
 */
import { Config, Context, Effect, Layer, Queue, Schema, Stream } from "effect"

class Counter extends Context.Service<Counter, { readonly start: number }>()("Counter") {}

const Item = Schema.Struct({ id: Schema.Number, name: Schema.String })

const program = Effect.gen(function*() {
  const counter = yield* Counter
  const label = yield* Config.String("FLOOR_LABEL").pipe(Config.withDefault("floor"))
  const queue = yield* Queue.unbounded<number>()
  yield* Queue.offer(queue, counter.start)
  const item = yield* Schema.decodeUnknownEffect(Item)({ id: yield* Queue.take(queue), name: label })
  const count = yield* Stream.runCount(Stream.range(1, 100))
  return { item, count }
})

Effect.runPromise(program.pipe(Effect.provide(Layer.succeed(Counter)({ start: 1 })))).then((result) => {
  // Said, so the bench knows the runtime has run the program (its modules are initialised, its code compiled).
  process.stdout.write(`${JSON.stringify(result)}\n`)
  setInterval(() => {}, 60_000)
})
