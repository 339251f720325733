/** What the target fuzz tests share: analysing a mangled file must end in one of the analyser's typed errors. */
import { assert } from "@effect/vitest"
import { Cause, Effect, Exit, Option } from "effect"

/**
 * Runs `analyze` on `bytes`; on success hands the result to `use` (which exercises its lookups) and returns "ok", on
 * failure asserts a typed error with one of `tags` and a message — never a defect — and returns its tag.
 */
export const exercise = <A, E extends { readonly _tag: string; readonly message: string }>(
  analyze: Effect.Effect<A, E>,
  tags: ReadonlySet<string>,
  label: string,
  use: (a: A) => void
): string => {
  const exit = Effect.runSyncExit(analyze)
  if (Exit.isFailure(exit)) {
    const err = Cause.findErrorOption(exit.cause)
    assert.isTrue(Option.isSome(err), `${label}: defect ${Cause.pretty(exit.cause)}`)
    const e = Option.getOrThrow(err)
    assert.isTrue(tags.has(e._tag), `${label}: unexpected ${e._tag}`)
    assert.isAbove(e.message.length, 0)
    return e._tag
  }
  use(exit.value)
  return "ok"
}
