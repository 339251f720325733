import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { spawn } from "node:child_process"
import { layer, TargetAnalysis } from "../../src/target/GoBinary.ts"
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
      assert.strictEqual(p.pid, child.pid)
      assert.strictEqual(p.exe, path)
      assert.strictEqual(p.exeLink, path)
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
})
