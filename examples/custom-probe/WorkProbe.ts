/**
 * A custom probe, written outside the framework: times `main.work(n int)` calls (see custom_work.bpf.c).
 * Everything specific to the probe is here; loading, attaching per process, sampling, decoding and counting are
 * the framework's.
 */
import { Effect, Schema } from "effect"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"

/**
 * `struct work_record`, field by field (natural C alignment, little-endian). Naming the struct has the layout checked
 * against the object's BTF when the probe loads: `start` mirrors the C member `start_ns` (named explicitly), the
 * others their snake_case names (`traceId` -> `trace_id`).
 */
export const WorkRecord = Binary.struct({
  start: Binary.member("start_ns", Binary.u64),
  end: Binary.member("end_ns", Binary.u64),
  traceId: Binary.hex(16),
  spanId: Binary.hex(8),
  n: Binary.u64n,
  goroutine: Binary.u64,
  pid: Binary.u32,
  _pad: Binary.pad(4)
}, { struct: "work_record" })

/** The probe definition: `WorkProbe.layer` loads it; `WorkProbe.tag` is its service. */
export const WorkProbe = Probe.instrument({
  name: "example/work",
  object: Probe.objectFile("custom_work"),
  manifest: {
    // `main` is not a module: "std" matches every Go program, and the symbol decides.
    library: { module: "std" },
    goVersions: ">=1.21",
    symbols: [{ name: "main.work", entry: "uprobe_work", return: "uprobe_work_ret" }]
  },
  config: Schema.Struct({
    /** Calls with a smaller n are not recorded (filtered in BPF). */
    minN: Schema.Number.pipe(
      Schema.check(Schema.isGreaterThanOrEqualTo(0)),
      Schema.withDecodingDefault(Effect.succeed(0))
    )
  }),
  constants: ({ config }) => ({ min_n: BigInt(config.minN) }),
  record: Binary.schema(WorkRecord),
  span: (r) => ({
    pid: r.pid,
    traceId: r.traceId,
    spanId: r.spanId,
    traceFlags: 1,
    name: "main.work",
    kind: "internal",
    startMonoNs: r.start,
    endMonoNs: r.end,
    attributes: { "work.n": r.n, "go.goroutine.g": `0x${r.goroutine.toString(16)}` },
    status: { code: "unset" }
  })
})
