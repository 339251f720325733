/**
 * The shipped offsets table against the probes' manifests: a probe claiming a module or Go version the table does not
 * cover would attach to binaries with DWARF but be refused on the same program stripped. So every released version
 * (as the Go module proxy listed them at generation) in a manifest's `versions`, with every supported Go in its
 * `goVersions`, must give an offset for each required field.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Path from "node:path"
import { Result } from "effect"
import * as Version from "../../src/probe/internal/version.ts"
import { compareVersions, find, shipped } from "../../src/target/Offsets.ts"
import { loadManifests } from "../../scripts/offsets/fields.ts"

const root = Path.resolve(import.meta.dirname, "../..")
/** The Go toolchains the table is generated with for modules (the newest patch of each supported line). */
const supportedGo = ["1.25.9", "1.26.8", "1.27.3"]

describe("the shipped offsets table covers the manifests' claims", async () => {
  const manifests = await loadManifests(root)

  it("finds the manifests (at least grpc, go_redis and database_sql)", () => {
    const files = manifests.map((m) => m.file)
    assert.includeMembers(files, ["DatabaseSql.ts", "GoRedis.ts", "Grpc.ts"])
  })

  for (const { file, manifest } of manifests) {
    const module = manifest.library!.module!
    const required = Object.values(manifest.fields ?? {}).filter((f) => f.optional !== true)
    if (required.length === 0) continue
    const goRange = manifest.goVersions ?? "*"
    it(`${file}: ${module} ${manifest.library!.versions ?? "*"}, Go ${goRange}`, () => {
      const gos = supportedGo.filter((g) => Version.satisfies(g, goRange))
      assert.isAbove(gos.length, 0, "no supported Go in the manifest's range")
      const versions = module === "std"
        ? gos.filter((g) => Version.satisfies(g, manifest.library!.versions ?? "*"))
        : (shipped.generated?.released?.[module] ?? []).filter((v) =>
          Version.satisfies(v, manifest.library!.versions ?? "*")
        )
      assert.isAbove(versions.length, 0, `the table lists no release of ${module} in the manifest's range`)
      const missing: Array<string> = []
      for (const v of versions) {
        // A release whose go.mod needs a newer Go cannot be in a binary built with an older one.
        const needs = shipped.modules[module]?.needsGo?.[v] ?? "0"
        for (const g of module === "std" ? [v] : gos.filter((g) => compareVersions(g, needs) >= 0)) {
          const binary = { goVersion: g, modules: new Map([["std", g], [module, v]]) }
          for (const f of required) {
            const r = find(shipped, binary, f.type, f.field)
            if (Result.isFailure(r)) missing.push(`${v} go${g}: ${r.failure.message}`)
          }
        }
      }
      assert.deepStrictEqual(missing.slice(0, 10), [], `${missing.length} missing`)
    })
  }
})
