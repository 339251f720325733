/** A test clock for what code under test arms: the duration (ms) of every sleep asked of it, recorded. */
import { Clock, Duration, Effect } from "effect"

/**
 * The current (test) clock, with every sleep recorded; `provide` runs an effect with it (fibers forked under it keep
 * it).
 */
export const countingClock = Effect.gen(function*() {
  const clock = yield* Clock.Clock
  const sleeps: Array<number> = []
  const counting: Clock.Clock = {
    currentTimeMillisUnsafe: () => clock.currentTimeMillisUnsafe(),
    currentTimeMillis: clock.currentTimeMillis,
    currentTimeNanosUnsafe: () => clock.currentTimeNanosUnsafe(),
    currentTimeNanos: clock.currentTimeNanos,
    monotonicTimeNanosUnsafe: () => clock.monotonicTimeNanosUnsafe(),
    monotonicTimeNanos: clock.monotonicTimeNanos,
    sleep: (d) => {
      sleeps.push(Duration.toMillis(d))
      return clock.sleep(d)
    }
  }
  return { sleeps, provide: Effect.provideService(Clock.Clock, counting) }
})
