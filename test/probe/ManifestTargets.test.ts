import { assert, describe, it } from "@effect/vitest"
import * as KernelFacts from "../../src/kernel/KernelFacts.ts"
import * as Manifest from "../../src/probe/Manifest.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"

const ssl = Manifest.make({
  library: { sharedObject: "libssl.so.3", versions: ">=3.0.0 <4" },
  symbols: [
    { name: "SSL_write", entry: "uprobe_SSL_write", return: "uretprobe_SSL_write" },
    { name: "SSL_write_ex", entry: "uprobe_SSL_write_ex", optional: true }
  ]
})

const libssl = (over: Partial<ProbeTest.FakeLibrary> = {}): ProbeTest.FakeLibrary => ({
  name: "libssl.so.3",
  version: "3.0.0",
  file: "2049:1001",
  symbols: { SSL_write: 0x3a000 },
  ...over
})

const tracing = Manifest.make({
  processes: "any",
  tracepoints: [{ program: "tp_sched_switch", category: "sched", name: "sched_switch" }]
})

const reason = (app: Manifest.Applicability) => app._tag === "NotApplicable" ? app.reason : app._tag

describe("Manifest: shared libraries", () => {
  it("applies to a process of any language that maps the library, naming the library and its file", () => {
    for (const language of ["go", "native"] as const) {
      const app = Manifest.check("ssl", ssl, ProbeTest.target({ language, libraries: [libssl()] }))
      assert.deepStrictEqual(app, {
        _tag: "Applies",
        probe: "ssl",
        symbols: ["SSL_write"],
        missingOptional: ["SSL_write_ex"],
        offsets: {},
        library: {
          name: "libssl.so.3",
          path: "/usr/lib/x86_64-linux-gnu/libssl.so.3",
          file: "2049:1001",
          version: "3.0.0"
        }
      })
    }
  })

  it("finds the library by soname when the mapped file has another name", () => {
    const app = Manifest.check(
      "ssl",
      ssl,
      ProbeTest.target({ libraries: [libssl({ name: "libssl-custom.so", soname: "libssl.so.3" })] })
    )
    assert.strictEqual(app._tag, "Applies")
  })

  it("says why it does not apply: not mapped, version outside or unknown, symbol missing, not a function", () => {
    const check = (libraries: ReadonlyArray<ProbeTest.FakeLibrary>) =>
      reason(Manifest.check("ssl", ssl, ProbeTest.target({ language: "native", libraries })))
    assert.strictEqual(check([]), "shared library libssl.so.3 is not mapped by the process")
    assert.strictEqual(check([libssl({ name: "libssl.so.1.1", soname: "libssl.so.1.1" })]),
      "shared library libssl.so.3 is not mapped by the process")
    assert.strictEqual(
      check([libssl({ version: "4.0.1" })]),
      "libssl.so.3 4.0.1 is outside the supported range >=3.0.0 <4"
    )
    assert.strictEqual(
      check([{ name: "libssl.so.3", symbols: { SSL_write: 1 } }]),
      "libssl.so.3 exposes no version (no version text, no symbol versions): cannot check the supported range " +
        ">=3.0.0 <4"
    )
    assert.strictEqual(
      check([libssl({ symbols: {} })]),
      "required symbol SSL_write is not in libssl.so.3 (/usr/lib/x86_64-linux-gnu/libssl.so.3)"
    )
    assert.strictEqual(
      check([libssl({ symbols: {}, stripped: true })]),
      "required symbol SSL_write is not in libssl.so.3 (/usr/lib/x86_64-linux-gnu/libssl.so.3, stripped: only " +
        "exported symbols known)"
    )
    assert.strictEqual(
      check([libssl({ symbols: { SSL_write: { fileOffset: 0x5000, kind: "object" } } })]),
      "symbol SSL_write of libssl.so.3 (/usr/lib/x86_64-linux-gnu/libssl.so.3) is not a function in a file-backed " +
        "segment"
    )
  })

  it("a Go-module probe does not apply to a native process, saying so", () => {
    const go = Manifest.make({ library: { module: "std" }, symbols: [{ name: "runtime.main", entry: "e" }] })
    const native = (options: ProbeTest.FakeTargetOptions) =>
      reason(Manifest.check("go", go, ProbeTest.target({ language: "native", ...options })))
    assert.strictEqual(native({ nativeLanguage: "c++" }), "not a Go program (c++)")
    assert.strictEqual(native({ stripped: true }), "not a Go program (no symbols)")
    assert.strictEqual(native({}), "not a Go program (native)")
  })

  it("validate refuses mixed shapes built without the types", () => {
    const untyped = (m: unknown) => Manifest.validate(m as Manifest.Manifest)
    assert.deepStrictEqual(
      untyped({
        library: { sharedObject: "libssl.so.3", module: "std" },
        symbols: [{ name: "SSL_write", entry: "e" }],
        fields: {},
        goVersions: ">=1.21"
      }),
      [
        "a library is a Go module or a shared object, not both",
        "a shared-library probe has no Go struct fields",
        "a shared-library probe has no Go versions"
      ]
    )
    const mixed = { processes: "some", library: { module: "std" }, symbols: [{ name: "f", entry: "e" }] }
    assert.deepStrictEqual(untyped(mixed), [
      'processes must be "any" (got "some")',
      'a tracepoint instrument (processes: "any") names no library',
      'a tracepoint instrument (processes: "any") needs tracepoints',
      'a tracepoint instrument (processes: "any") has no symbols'
    ])
    assert.deepStrictEqual(Manifest.validate(ssl), [])
    assert.deepStrictEqual(Manifest.validate(tracing), [])
  })
})

describe("Manifest: tracepoint instruments", () => {
  it("applies to every target, Go or native, listing its tracepoints", () => {
    for (const language of ["go", "native"] as const) {
      assert.deepStrictEqual(Manifest.check("sched", tracing, ProbeTest.target({ language })), {
        _tag: "Applies",
        probe: "sched",
        symbols: [],
        missingOptional: [],
        offsets: {},
        tracepoints: ["sched:sched_switch"]
      })
    }
  })

  it("does not apply where the kernel lacks the tracepoint; unknown facts do not decide", () => {
    const kernel = KernelFacts.fromNames(["sched_process_exec"], "/sys/kernel/btf/vmlinux")
    assert.strictEqual(
      reason(Manifest.check("sched", tracing, ProbeTest.target(), kernel)),
      "tracepoint sched:sched_switch is not in this kernel (no btf_trace_sched_switch in /sys/kernel/btf/vmlinux)"
    )
    const has = KernelFacts.fromNames(["sched_switch"])
    assert.strictEqual(reason(Manifest.check("sched", tracing, ProbeTest.target(), has)), "Applies")
    const unknown = KernelFacts.unknown("x")
    assert.strictEqual(reason(Manifest.check("sched", tracing, ProbeTest.target(), unknown)), "Applies")
  })
})

describe("KernelFacts", () => {
  const btf = (strings: ReadonlyArray<string>) => {
    const table = Buffer.from(`\0${strings.join("\0")}\0`, "latin1")
    const header = Buffer.alloc(24)
    header.writeUInt16LE(0xeb9f, 0)
    header.writeUInt8(1, 2)
    header.writeUInt32LE(24, 4)
    header.writeUInt32LE(0, 8) // type_off
    header.writeUInt32LE(0, 12) // type_len
    header.writeUInt32LE(0, 16) // str_off
    header.writeUInt32LE(table.length, 20)
    return Buffer.concat([header, table])
  }

  it("reads the btf_trace_ names of a BTF string section, whole strings only", () => {
    assert.deepStrictEqual(
      KernelFacts.tracepointNames(
        btf(["task_struct", "btf_trace_sched_switch", "x_btf_trace_fake", "btf_trace_kfree"])
      ),
      ["sched_switch", "kfree"]
    )
    assert.strictEqual(KernelFacts.tracepointNames(Buffer.from("not btf at all, not at all")), undefined)
  })
})
