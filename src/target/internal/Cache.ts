/**
 * The analysis cache shared by Go and native analysis: one entry per file identity (device, inode, mtime, size), so
 * renamed paths and every /proc/<pid>/exe of a fleet running one binary share a single analysis; concurrent requests
 * for the same file wait for the one analysis in flight.
 */
import * as FsSync from "node:fs"
import * as Fs from "node:fs/promises"
import { Deferred, Effect } from "effect"
import * as Errors from "../Errors.ts"

/** An error that names the file it is about. */
interface PathError {
  readonly _tag: string
  readonly path: string
  readonly message: string
}

type Entry<A, E> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: E }

/** A cached error, re-addressed to the path it is asked for now (e.g. another pid's /proc/<pid>/exe). */
export const withPath = <E extends PathError>(e: E, path: string): E => {
  if (e.path === path) return e
  const { _tag, ...fields } = { ...e } as Record<string, unknown>
  void _tag
  const Ctor = e.constructor as new(fields: Record<string, unknown>) => E
  return new Ctor({ ...fields, path, message: e.message.split(e.path).join(path) })
}

/** Counters of an analysis cache. */
export interface Stats {
  readonly hits: number
  readonly misses: number
  readonly entries: number
}

export interface FileCache<A, E> {
  /** The analysis of the file at `path`, from the cache or by reading it and running `analyze` once. */
  readonly get: (path: string) => Effect.Effect<A, E | Errors.FileUnreadable>
  readonly stats: Effect.Effect<Stats>
}

/**
 * A cache of `analyze` over files, the `maxEntries` most recently used kept. Failures are cached too (a file that
 * is not what the analysis wants stays so until it changes: discovery scans must not re-read it every time), except
 * an unreadable file, which may become readable.
 */
export const make = <A, E extends PathError>(
  maxEntries: number,
  analyze: (path: string, bytes: Buffer) => Effect.Effect<A, E>
): FileCache<A, E> =>
  makeWith(maxEntries, (path) =>
    Effect.tryPromise({ try: () => Fs.readFile(path), catch: unreadable(path) }).pipe(
      Effect.flatMap((bytes) => analyze(path, bytes))
    ))

/** The error of a file that could not be read (not cached: it may become readable). */
export const unreadable = (path: string) => (e: unknown): Errors.FileUnreadable =>
  new Errors.FileUnreadable({ path, message: `${path}: ${(e as Error).message}` })

/**
 * The same cache over an analysis that reads the file itself (only the parts it needs), failing with
 * `FileUnreadable` when it cannot.
 */
export const makeWith = <A, E extends PathError>(
  maxEntries: number,
  analyze: (path: string) => Effect.Effect<A, E | Errors.FileUnreadable>
): FileCache<A, E> => {
  const cache = new Map<string, Entry<A, E>>()
  const remember = (key: string, entry: Entry<A, E>) => {
    cache.set(key, entry)
    while (cache.size > maxEntries) cache.delete(cache.keys().next().value!)
  }
  const inflight = new Map<string, Deferred.Deferred<A, E | Errors.FileUnreadable>>()
  let hits = 0
  let misses = 0

  const get = Effect.fnUntraced(function*(path: string) {
    // On the caller's turn: an awaited stat would wait for the event loop (busy describing the probes while a launch
    // analyses its executable), and the analysis's reads could not start before it.
    const st = yield* Effect.try({ try: () => FsSync.statSync(path, { bigint: true }), catch: unreadable(path) })
    const key = `${st.dev}:${st.ino}:${st.mtimeNs}:${st.size}`
    const hit = cache.get(key)
    if (hit !== undefined) {
      hits++
      cache.delete(key)
      cache.set(key, hit)
      return hit.ok ? hit.value : yield* Effect.fail(withPath(hit.error, path))
    }
    // A fleet starting at once asks for the same executable many times: one analysis, the others wait for it.
    const pending = inflight.get(key)
    if (pending !== undefined) {
      hits++
      return yield* Deferred.await(pending)
    }
    misses++
    const deferred = Deferred.makeUnsafe<A, E | Errors.FileUnreadable>()
    inflight.set(key, deferred)
    return yield* analyze(path).pipe(
      Effect.tap((value) => Effect.sync(() => remember(key, { ok: true, value }))),
      Effect.tapError((error) =>
        Effect.sync(() => error._tag === "FileUnreadable" ? undefined : remember(key, { ok: false, error: error as E }))
      ),
      Effect.onExit((exit) => Effect.andThen(Effect.sync(() => inflight.delete(key)), Deferred.done(deferred, exit)))
    )
  })

  return { get, stats: Effect.sync(() => ({ hits, misses, entries: cache.size })) }
}
