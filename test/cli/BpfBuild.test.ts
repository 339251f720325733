/**
 * `probescope bpf build`: the flags bpf/Makefile and the command share, a real compile with the package's headers,
 * and each failure as its typed error and as the CLI's one line with exit 1. Needs clang and bpf/out/vmlinux.h
 * (scripts/setup.sh installs and makes both), no root.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as BpfBuild from "../../src/cli/BpfBuild.ts"

const root = Path.resolve(import.meta.dirname, "..", "..")
const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-bpfbuild-"))

/** A program using the package's headers (common.h, GO_ARG1, ps_submit) and a header of its own beside it. */
const goodSource = `#include "common.h"
#include "mine.h"
SEC("uprobe")
int uprobe_mine(struct pt_regs *ctx) {
  struct mine r = { .n = GO_ARG1(ctx) };
  ps_submit(&r, sizeof(r));
  return 0;
}
`

const badSource = `#include "common.h"
int f(void) { return undeclared_thing; }
`

describe("bpf build", () => {
  it("reads the flags bpf/Makefile compiles with", () => {
    const flags = BpfBuild.parseFlags(Fs.readFileSync(Path.join(root, "bpf/cflags"), "utf8"))
    assert.deepStrictEqual(flags, [
      "-g",
      "-O2",
      "-target",
      "bpf",
      "-D__TARGET_ARCH_x86",
      "-Wall",
      "-Wno-unused-function"
    ])
    const make = spawnSync("make", ["-n", "-B", "-C", Path.join(root, "bpf"), "out/doctor.bpf.o"], { encoding: "utf8" })
    const line = make.stdout.split("\n").find((l) => l.includes("doctor.bpf.c")) ?? ""
    assert.isTrue(line.startsWith(`clang ${flags.join(" ")} -I include/probescope -I out -c doctor.bpf.c`), line)
  })

  it("names the object beside the source", () => {
    assert.strictEqual(BpfBuild.defaultOutput("probe/cache.bpf.c"), "probe/cache.bpf.o")
    assert.strictEqual(BpfBuild.defaultOutput("x.c"), "x.o")
    assert.strictEqual(BpfBuild.defaultOutput("x.bpf"), "x.bpf.o")
  })

  it.effect("compiles a program with the package's headers into a BPF ELF object", () =>
    Effect.gen(function*() {
      const dir = tmp()
      Fs.writeFileSync(Path.join(dir, "mine.bpf.c"), goodSource)
      Fs.writeFileSync(Path.join(dir, "mine.h"), "struct mine { u64 n; };\n")
      const result = yield* BpfBuild.build({ file: Path.join(dir, "mine.bpf.c"), output: Path.join(dir, "o/m.o") })
      assert.strictEqual(result.output, Path.join(dir, "o/m.o"))
      const elf = Fs.readFileSync(result.output)
      assert.strictEqual(elf.subarray(0, 4).toString("latin1"), "\x7fELF")
      assert.strictEqual(elf.readUInt16LE(18), 247) // e_machine: EM_BPF
      assert.deepStrictEqual(Fs.readdirSync(Path.join(dir, "o")), ["m.o"])
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("fails with clang's first error, keeping all it printed, and leaves no object", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const file = Path.join(dir, "bad.bpf.c")
      Fs.writeFileSync(file, badSource)
      const error = yield* Effect.flip(BpfBuild.build({ file }))
      assert.strictEqual(error._tag, "BpfCompileError")
      assert.strictEqual(
        error.message,
        `clang could not compile ${file} (exit 1): ${file}:2:22: error: use of undeclared identifier 'undeclared_thing'`
      )
      assert.isTrue(error._tag === "BpfCompileError" && error.diagnostics.includes("1 error generated."))
      assert.deepStrictEqual(Fs.readdirSync(dir), ["bad.bpf.c"])
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("fails when clang is missing, saying how to get it", () =>
    Effect.gen(function*() {
      const dir = tmp()
      Fs.writeFileSync(Path.join(dir, "mine.bpf.c"), goodSource)
      const file = Path.join(dir, "mine.bpf.c")
      // An absolute path: a bare name would be looked up on PATH, where a directory the user cannot search (a
      // root-only one, as when the unit tests run unprivileged with root's PATH) makes it EACCES, not ENOENT.
      const error = yield* Effect.flip(BpfBuild.build({ file, clang: "/nonexistent/clang-nonesuch" }))
      assert.strictEqual(error._tag, "ClangNotFound")
      assert.strictEqual(
        error.message,
        "/nonexistent/clang-nonesuch not found; install clang (Debian: apt-get install -y clang) or set CLANG to one"
      )
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("fails on a missing source and on a package without its headers", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.flip(BpfBuild.build({ file: "no/such.bpf.c" }))
      assert.strictEqual(missing._tag, "BpfSourceNotFound")
      assert.strictEqual(missing.message, "no/such.bpf.c: no such file")
      const dir = tmp()
      Fs.writeFileSync(Path.join(dir, "mine.bpf.c"), goodSource)
      const paths = BpfBuild.packagePaths(dir)
      const incomplete = yield* Effect.flip(BpfBuild.build({ file: Path.join(dir, "mine.bpf.c"), paths }))
      assert.strictEqual(incomplete._tag, "BpfToolchainIncomplete")
      assert.strictEqual(
        incomplete.message,
        `missing the probescope BPF headers: ${paths.includeDir} (in a checkout: npm run build:bpf; else ` +
          "reinstall probescope)"
      )
    }).pipe(Effect.provide(NodeServices.layer)))

  it("is one line and exit 1 from the CLI, after clang's own message", () => {
    const dir = tmp()
    const file = Path.join(dir, "bad.bpf.c")
    Fs.writeFileSync(file, badSource)
    const r = spawnSync(Path.join(root, "bin/probescope"), ["bpf", "build", file], {
      encoding: "utf8",
      timeout: 60_000
    })
    assert.strictEqual(r.status, 1, r.stderr)
    assert.strictEqual(r.stdout, "")
    const lines = r.stderr.trimEnd().split("\n")
    assert.strictEqual(
      lines.at(-1),
      `probescope: clang could not compile ${file} (exit 1): ${file}:2:22: error: use of undeclared identifier ` +
        "'undeclared_thing'"
    )
    assert.strictEqual(lines[0], `${file}:2:22: error: use of undeclared identifier 'undeclared_thing'`)
  })
})
