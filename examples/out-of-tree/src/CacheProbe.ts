/**
 * A probe written outside probescope's repository: one span per `main.(*Cache).Get` call of the example service
 * (service/main.go), a child of the net/http server span of the request being served.
 *
 * The BPF side is bpf/cache_get.bpf.c, compiled with `probescope bpf build`. Everything else — loading, attaching
 * per process, sampling, decoding, exporting — is probescope's. `probescope run --probe ./src/CacheProbe.ts` loads
 * this module (Node 24 strips the types) and runs its default export beside the built-in probes.
 */
import { Effect, Schema } from "effect"
import { GoContext } from "probescope/instrumentations"
import { Binary, Probe } from "probescope/probe"
import { fileURLToPath } from "node:url"

/**
 * `struct cache_get_record` of bpf/cache_get.bpf.c, field by field (natural C alignment, little-endian). Naming the
 * struct has the layout checked against the object's BTF at load: each field is the C member of its snake_case name
 * (`startNs` -> `start_ns`), so a struct changed on one side only fails the load, naming the field.
 */
export const CacheGetRecord = Binary.struct({
  startNs: Binary.u64,
  endNs: Binary.u64,
  traceId: Binary.hex(16),
  spanId: Binary.hex(8),
  parentSpanId: Binary.hex(8),
  pid: Binary.u32,
  flags: Binary.u8,
  hasParent: Binary.bool,
  found: Binary.bool,
  keyLen: Binary.u8,
  key: Binary.string(32, "keyLen")
}, { struct: "cache_get_record" })

/** A decoded record. */
export type CacheGetRecord = ReturnType<typeof CacheGetRecord.decode>

/** The span of one call: INTERNAL, under the span active on the goroutine (the request's server span) if any. */
export const toSpan = (r: CacheGetRecord): Probe.SpanInput => ({
  pid: r.pid,
  traceId: r.traceId,
  spanId: r.spanId,
  ...(r.hasParent ? { parentSpanId: r.parentSpanId } : {}),
  traceFlags: r.flags,
  name: "Cache.Get",
  kind: "internal",
  startMonoNs: r.startNs,
  endMonoNs: r.endNs,
  attributes: { "cache.key": r.key, "cache.hit": r.found },
  status: { code: "unset" }
})

/** The compiled object: built beside its source by `npm run build:bpf`; a path, so found wherever this project is. */
export const objectPath = fileURLToPath(new URL("../bpf/cache_get.bpf.o", import.meta.url))

/** The probe definition. */
export const CacheProbe = Probe.instrument({
  name: "example/cache-get",
  object: objectPath,
  manifest: {
    // `main` is no module: "std" matches every Go program, and the symbol decides.
    library: { module: "std" },
    goVersions: ">=1.22",
    symbols: [{ name: "main.(*Cache).Get", entry: "uprobe_cache_get", return: "uprobe_cache_get_ret" }]
  },
  // The goroutine -> span map of go_context, where the net/http server probe publishes each request's span.
  reuseMaps: GoContext.sharedMaps,
  config: Schema.Struct({
    /** Keys longer than this many bytes are cut (the record holds 32). */
    maxKeyBytes: Schema.Number.pipe(
      Schema.check(Schema.isBetween({ minimum: 1, maximum: 32 })),
      Schema.withDecodingDefault(Effect.succeed(32))
    )
  }),
  record: Binary.schema(CacheGetRecord),
  span: (r, { config }) => toSpan({ ...r, key: r.key.slice(0, config.maxKeyBytes) })
})

/** What `probescope run --probe` loads. */
export default CacheProbe
