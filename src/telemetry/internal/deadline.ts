/**
 * One time budget shared by everything the telemetry layer does when it closes: the final metrics collection and
 * export, the span queues' drain and the exporters' shutdown all run against the same deadline, so a dead collector
 * costs at most `PROBESCOPE_SHUTDOWN_TIMEOUT` in total instead of one timeout per step.
 */
import { Clock, Effect, Option } from "effect"

/** A deadline that starts counting down the first time anything asks how much is left. */
export interface Deadline {
  readonly totalMillis: number
  /** Milliseconds left (never negative); the first call starts the clock. */
  readonly remaining: Effect.Effect<number>
}

export const make = (totalMillis: number): Deadline => {
  let end: number | undefined
  return {
    totalMillis,
    remaining: Effect.map(Clock.currentTimeMillis, (now) => {
      end ??= now + totalMillis
      return Math.max(0, end - now)
    })
  }
}

/**
 * Runs `effect` within what is left of the deadline: `None` (and `effect` interrupted) when the deadline passes
 * first, or has already passed.
 */
export const within = <A, E, R>(deadline: Deadline, effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(deadline.remaining, (left) =>
    left <= 0
      ? Effect.succeed(Option.none<A>())
      : Effect.timeoutOption(effect, left))
