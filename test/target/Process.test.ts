import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import type { Target } from "../../src/probe/Target.ts"
import { layer, make, TargetAnalysis } from "../../src/target/GoBinary.ts"
import { buildFixture } from "./helpers.ts"

describe("TargetAnalysis", { timeout: 300_000 }, () => {
  it.effect("analyses a running process and caches per executable", () =>
    Effect.gen(function*() {
      const path = buildFixture("1.26.8", true)
      const child = yield* Effect.acquireRelease(
        Effect.sync(() => spawn(path, ["sleep"], { stdio: "ignore" })),
        (c) => Effect.sync(() => c.kill("SIGKILL"))
      )
      // Wait until the kernel has exec'ed the binary (the exe link then points at it).
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 200)))
      const svc = yield* TargetAnalysis
      const p = yield* svc.analyzePid(child.pid!)
      // A GoProcess is a probe `Target` as it is (checked by the compiler).
      const target: Target = p
      assert.strictEqual(target.pid, child.pid)
      assert.strictEqual(p.exe, path)
      assert.strictEqual(p.exeLink, path)
      // The identity shared links are keyed by: the executable's device and inode, as stat gives them.
      const st = Fs.statSync(path, { bigint: true })
      assert.strictEqual(p.file, `${st.dev}:${st.ino}`)
      assert.strictEqual(p.goVersion, "1.26.8")
      assert.strictEqual(p.modules.get("std"), "1.26.8")
      assert.isTrue(Option.isSome(p.function("net/http.serverHandler.ServeHTTP")))
      assert.strictEqual(Option.getOrThrow(p.field("net/http.Request", "Method")).source, "table")

      // Same inode through another path: one analysis.
      const byFile = yield* svc.analyzeFile(path)
      assert.strictEqual(byFile, p.binary)
      const again = yield* svc.analyzePid(child.pid!)
      assert.strictEqual(again.binary, p.binary)
      const stats = yield* svc.cacheStats
      assert.deepStrictEqual(stats, { hits: 2, misses: 1, entries: 1 })
    }).pipe(Effect.provide(layer)))

  it.effect("concurrent requests for one new executable share one analysis", () =>
    Effect.gen(function*() {
      const svc = yield* TargetAnalysis
      const path = buildFixture("1.24.13", true)
      const requests = Array.from({ length: 20 }, () => svc.analyzeFile(path))
      const all = yield* Effect.all(requests, { concurrency: "unbounded" })
      assert.isTrue(all.every((b) => b === all[0]))
      assert.deepStrictEqual(yield* svc.cacheStats, { hits: 19, misses: 1, entries: 1 })
      // A file that is not Go is remembered as such (a rescan does not read it again), under the path asked for.
      const e1 = yield* Effect.flip(svc.analyzeFile("/bin/true"))
      assert.strictEqual(e1._tag, "NotGo")
      const e2 = yield* Effect.flip(svc.analyzeFile("/usr/bin/true"))
      assert.strictEqual(e2._tag, "NotGo")
      assert.strictEqual(e2.message, "/usr/bin/true: no Go build information (.go.buildinfo): not a Go program")
      assert.deepStrictEqual(yield* svc.cacheStats, { hits: 20, misses: 2, entries: 2 })
    }).pipe(Effect.provide(layer)))

  it.effect("evicts the least recently used executable beyond maxEntries", () =>
    Effect.gen(function*() {
      const svc = yield* make({ maxEntries: 1 })
      const a = yield* svc.analyzeFile(buildFixture("1.22.12", true))
      yield* svc.analyzeFile(buildFixture("1.26.8", true))
      const again = yield* svc.analyzeFile(buildFixture("1.22.12", true))
      assert.notStrictEqual(again, a)
      assert.deepStrictEqual(yield* svc.cacheStats, { hits: 0, misses: 3, entries: 1 })
    }))
})
