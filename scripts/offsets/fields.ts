/**
 * Which struct fields the table records, per covered module: every `fields` entry of every instrumentation's
 * manifest (src/instrumentations/*.ts, found by their exported `manifest`), plus `knownFields` for the standard
 * library (what `probescope inspect` reports). A field belongs to:
 *   - "std" when its type's package path has no dot in its first element ("net/http.Request", "internal/abi.Type");
 *   - the covered module that is a path prefix of its type ("google.golang.org/grpc/internal/transport.Stream");
 *   - else the module of the manifest naming it, as a dependency type (grpc's "golang.org/x/net/http2.FrameHeader").
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { knownFields } from "../../src/target/Fields.ts"
import type { ModuleSpec } from "./specs.ts"

/** Module → type → field names. */
export type Wanted = Map<string, Map<string, Set<string>>>

interface FieldSpecLike {
  readonly type: string
  readonly field: string
  readonly optional?: boolean
}
/** What the generator and the coverage test read of a manifest. */
export interface ManifestLike {
  readonly library?: { readonly module?: string; readonly versions?: string }
  readonly goVersions?: string
  readonly fields?: Readonly<Record<string, FieldSpecLike>>
}

/** The package path of a type name: everything before the last "." after the last "/". */
export const packageOf = (type: string): string => {
  const slash = type.lastIndexOf("/")
  const dot = type.indexOf(".", slash + 1)
  return dot < 0 ? type : type.slice(0, dot)
}

/** Whether a type is the standard library's: its package path's first element has no dot. */
export const isStdType = (type: string): boolean => !packageOf(type).split("/")[0]!.includes(".")

/** The manifests exported by src/instrumentations/*.ts (any export named `manifest` with a Go library). */
export const loadManifests = async (root: string): Promise<Array<{ file: string; manifest: ManifestLike }>> => {
  const dir = Path.join(root, "src/instrumentations")
  const out: Array<{ file: string; manifest: ManifestLike }> = []
  for (const f of Fs.readdirSync(dir).filter((f) => f.endsWith(".ts") && f !== "index.ts").sort()) {
    const mod = (await import(pathToFileURL(Path.join(dir, f)).href)) as Record<string, unknown>
    const m = mod["manifest"] as ManifestLike | undefined
    if (m?.library?.module !== undefined && m.fields !== undefined) out.push({ file: f, manifest: m })
  }
  return out
}

/** Sorts the manifests' fields (and knownFields) onto the covered modules. Fields of no covered module are dropped. */
export const wantedFields = (
  specs: ReadonlyArray<ModuleSpec>,
  manifests: ReadonlyArray<{ manifest: ManifestLike }>
): Wanted => {
  const wanted: Wanted = new Map(specs.map((s) => [s.module, new Map()]))
  const add = (module: string, type: string, field: string) => {
    const types = wanted.get(module)
    if (types === undefined) return
    let fields = types.get(type)
    if (fields === undefined) types.set(type, fields = new Set())
    fields.add(field)
  }
  for (const [type, fields] of Object.entries(knownFields)) for (const f of fields) add("std", type, f)
  for (const { manifest } of manifests) {
    for (const f of Object.values(manifest.fields ?? {})) {
      if (isStdType(f.type)) {
        add("std", f.type, f.field)
        continue
      }
      const pkg = packageOf(f.type)
      const owner = specs.find((s) => s.module !== "std" && (pkg === s.module || pkg.startsWith(s.module + "/")))
      // A dependency type goes with the manifest's module (a std probe's driver types with none: not recorded).
      const module = owner?.module ?? manifest.library!.module!
      if (module !== "std") add(module, f.type, f.field)
    }
  }
  return wanted
}
