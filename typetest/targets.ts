/**
 * Type-level tests of the manifest shapes (checked by `tsc --noEmit -p .`): a Go library, a shared library, a
 * tracepoint instrument and a global probe keep to their own fields; mixing them is a compile error.
 */
import * as Binary from "../src/probe/Binary.ts"
import * as Manifest from "../src/probe/Manifest.ts"
import * as Probe from "../src/probe/Probe.ts"
import type { SharedLibrary, Target } from "../src/probe/Target.ts"

const Record = Binary.schema(Binary.struct({ n: Binary.u64 }))
const On = Binary.struct({ on: Binary.u8 })

// A shared-library probe: uprobes and uretprobes on ELF symbols, no Go concepts.
export const Ssl = Probe.instrument({
  name: "typetest/ssl",
  object: Probe.objectFile("ssl"),
  manifest: {
    library: { sharedObject: "libssl.so.3", versions: ">=3.0.0 <4" },
    symbols: [{ name: "SSL_write", entry: "uprobe_SSL_write", return: "uretprobe_SSL_write" }]
  },
  perTarget: {
    layout: On,
    value: ({ offsets, target }) => {
      // @ts-expect-error a shared-library probe has no struct offsets
      const x: number = offsets.method
      const lib: SharedLibrary | undefined = Manifest.findLibrary(target, "libssl.so.3")
      return { on: lib === undefined ? x : 1 }
    }
  },
  record: Record,
  span: () => undefined
})

// A tracepoint instrument: every target applies, filtered in the kernel by the per-pid entry.
export const Sched = Probe.instrument({
  name: "typetest/sched",
  object: Probe.objectFile("sched"),
  manifest: { processes: "any", tracepoints: [{ program: "tp_switch", category: "sched", name: "sched_switch" }] },
  perTarget: { layout: On, value: () => ({ on: 1 }) },
  record: Record,
  span: () => undefined
})

// @ts-expect-error a shared-library manifest has no Go struct fields
Manifest.make({
  library: { sharedObject: "libssl.so.3" },
  symbols: [{ name: "SSL_read", entry: "uprobe_SSL_read" }],
  fields: { method: { type: "net/http.Request", field: "Method" } }
})

// @ts-expect-error nor Go versions
Manifest.make({
  library: { sharedObject: "libssl.so.3" },
  symbols: [{ name: "SSL_read", entry: "uprobe_SSL_read" }],
  goVersions: ">=1.21"
})

// @ts-expect-error a shared-library manifest needs its symbols
Manifest.make({ library: { sharedObject: "libssl.so.3" } })

Manifest.make({
  // @ts-expect-error a library is a Go module or a shared object, not both
  library: { module: "std", sharedObject: "libc.so.6" },
  symbols: [{ name: "getpid", entry: "uprobe_getpid" }]
})

// @ts-expect-error a tracepoint instrument names no library
Manifest.make({
  processes: "any",
  tracepoints: [{ program: "tp", category: "sched", name: "sched_switch" }],
  library: { module: "std" }
})

// @ts-expect-error nor symbols: its programs are tracepoints
Manifest.make({
  processes: "any",
  tracepoints: [{ program: "tp", category: "sched", name: "sched_switch" }],
  symbols: [{ name: "runtime.main", entry: "uprobe_main" }]
})

// @ts-expect-error a tracepoint instrument needs at least one tracepoint
Manifest.make({ processes: "any", tracepoints: [] })

// @ts-expect-error "any" is the only way to say which processes: the selection picks them
Manifest.make({ processes: "some", tracepoints: [{ program: "tp", category: "sched", name: "sched_switch" }] })

Probe.instrument({
  name: "typetest/sched_fields",
  object: Probe.objectFile("sched"),
  // @ts-expect-error a tracepoint instrument has no struct fields either
  manifest: {
    processes: "any",
    tracepoints: [{ program: "tp", category: "sched", name: "sched_switch" }],
    fields: { pid: { type: "task_struct", field: "pid" } }
  },
  record: Record,
  span: () => undefined
})

// A Go manifest keeps everything it had.
Manifest.make({
  library: { module: "std", package: "net/http", versions: ">=1.21" },
  goVersions: ">=1.21",
  symbols: [{ name: "net/http.serverHandler.ServeHTTP", entry: "e", return: "r" }],
  fields: { method: { type: "net/http.Request", field: "Method" } }
})

// Every target has symbols and a language; native ones have no Go version to read.
export const describeTarget = (t: Target): string => {
  const s = t.symbol("runtime.firstmoduledata")
  // @ts-expect-error the language is "go" or "native", nothing else
  const other: Target["language"] = "python"
  return `${t.language} ${s._tag} ${t.libraries.map((l) => `${l.name}@${l.base}`).join(",")} ${other}`
}
