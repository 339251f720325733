/**
 * `probescope bpf build FILE.bpf.c [-o OUT]`: compiles a user's BPF program as the package's own are compiled, so a
 * probe written outside this repository needs neither a copy of bpf/Makefile's flags nor the include paths.
 *
 * The flags come from bpf/cflags, which bpf/Makefile reads too (one list for both); the includes are the package's
 * bpf/include/probescope (common.h, go_abi.h, strings.h, events.h, sampling.h, ...) and the directory of the
 * vmlinux.h the built-in objects were compiled against (bpf/out/vmlinux.h, shipped in the package; a checkout makes it
 * with `make -C bpf`). `$CLANG` names another clang, as for the Makefile.
 */
import { Console, Effect, FileSystem, Option, Schema, Stream } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { ChildProcess } from "effect/process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Lifecycle from "./Lifecycle.ts"

/** The package root: two levels above this module (src/cli in a checkout, dist/cli in the package). */
export const packageRoot: string = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "..")

/** Where the package keeps what a build needs. */
export interface BpfPaths {
  /** bpf/cflags: clang's flags, one per line. */
  readonly flagsFile: string
  /** bpf/include/probescope: the headers BPF programs include by name (`#include "common.h"`). */
  readonly includeDir: string
  /** The vmlinux.h that common.h includes. */
  readonly vmlinuxHeader: string
}

/** The package's own paths. */
export const packagePaths = (root: string = packageRoot): BpfPaths => ({
  flagsFile: Path.join(root, "bpf", "cflags"),
  includeDir: Path.join(root, "bpf", "include", "probescope"),
  vmlinuxHeader: Path.join(root, "bpf", "out", "vmlinux.h")
})

/** clang is not installed (or `$CLANG` names nothing runnable). */
export class ClangNotFound extends Schema.TaggedError<ClangNotFound>()("ClangNotFound", {
  clang: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/** The source file does not exist. */
export class BpfSourceNotFound extends Schema.TaggedError<BpfSourceNotFound>()("BpfSourceNotFound", {
  file: Schema.String,
  message: Schema.String
}) {}

/** Something the package should hold for a build is missing (flags, headers, vmlinux.h). */
export class BpfToolchainIncomplete extends Schema.TaggedError<BpfToolchainIncomplete>()("BpfToolchainIncomplete", {
  path: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/** clang rejected the program; `diagnostics` is everything it printed. */
export class BpfCompileError extends Schema.TaggedError<BpfCompileError>()("BpfCompileError", {
  file: Schema.String,
  exitCode: Schema.Number,
  diagnostics: Schema.String,
  message: Schema.String
}) {}

/** Every error of `build`. */
export type BpfBuildError = ClangNotFound | BpfSourceNotFound | BpfToolchainIncomplete | BpfCompileError

/** The flags of a bpf/cflags text: one per line, blank lines and `#` comments skipped. */
export const parseFlags = (text: string): ReadonlyArray<string> =>
  text.split("\n").map((line) => line.trim()).filter((line) => line !== "" && !line.startsWith("#"))

/** `x.bpf.c` → `x.bpf.o`, `x.c` → `x.o`, anything else gets `.o` appended; in the source's directory. */
export const defaultOutput = (file: string): string =>
  file.endsWith(".c") ? `${file.slice(0, -2)}.o` : `${file}.o`

/** The first `error:` line of clang's output (what the one-line report quotes), else its first line. */
export const firstError = (diagnostics: string): string => {
  const lines = diagnostics.split("\n").map((line) => line.trim()).filter((line) => line !== "")
  return lines.find((line) => / error: /.test(line) || line.startsWith("error:")) ?? lines[0] ?? "no output"
}

/** What `build` was asked and did. */
export interface BuildResult {
  readonly output: string
  /** clang's warnings (empty when there were none). */
  readonly diagnostics: string
}

export interface BuildOptions {
  readonly file: string
  readonly output?: string | undefined
  /** The clang to run (default `$CLANG`, else `clang` on PATH). */
  readonly clang?: string | undefined
  readonly paths?: BpfPaths | undefined
}

const requireFile = (path: string, what: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const exists = yield* fs.exists(path).pipe(Effect.orElseSucceed(() => false))
    if (!exists) {
      return yield* new BpfToolchainIncomplete({
        path,
        message: `missing ${what}: ${path} (in a checkout: npm run build:bpf; else reinstall probescope)`
      })
    }
  })

/**
 * Compiles `file` to `output` (default: beside it, `.bpf.c` → `.bpf.o`). Written to a temporary name and renamed, as
 * bpf/Makefile does, so a probe loading the object never reads half of it.
 */
export const build = Effect.fn("probescope.bpf.build")(function*(options: BuildOptions) {
  const fs = yield* FileSystem.FileSystem
  const paths = options.paths ?? packagePaths()
  const clang = options.clang ?? process.env["CLANG"] ?? "clang"
  const file = Path.resolve(options.file)
  const output = Path.resolve(options.output ?? defaultOutput(options.file))

  if (!(yield* fs.exists(file).pipe(Effect.orElseSucceed(() => false)))) {
    return yield* new BpfSourceNotFound({ file: options.file, message: `${options.file}: no such file` })
  }
  yield* requireFile(paths.includeDir, "the probescope BPF headers")
  yield* requireFile(paths.vmlinuxHeader, "vmlinux.h")
  const flags = parseFlags(
    yield* fs.readFileString(paths.flagsFile).pipe(
      Effect.mapError((cause) =>
        new BpfToolchainIncomplete({
          path: paths.flagsFile,
          message: `clang's flags are missing: ${paths.flagsFile} (reinstall probescope)`,
          cause
        })
      )
    )
  )

  yield* fs.makeDirectory(Path.dirname(output), { recursive: true }).pipe(Effect.orElseSucceed(() => undefined))
  const tmp = `${output}.${process.pid}.tmp`
  const args = [
    ...flags,
    "-I",
    paths.includeDir,
    "-I",
    Path.dirname(paths.vmlinuxHeader),
    "-c",
    file,
    "-o",
    tmp
  ]
  const { diagnostics, exitCode } = yield* Effect.scoped(Effect.gen(function*() {
    const handle = yield* ChildProcess.make(clang, args, { stdout: "inherit", stderr: "pipe" })
    const [diagnostics, exitCode] = yield* Effect.all(
      [Stream.mkString(Stream.decodeText(handle.stderr)), handle.exitCode],
      { concurrency: 2 }
    )
    return { diagnostics, exitCode: Number(exitCode) }
  })).pipe(
    Effect.catchTag("PlatformError", (cause) =>
      Effect.fail(
        new ClangNotFound({
          clang,
          message: (cause.reason._tag === "NotFound"
            ? `${clang} not found`
            : `${clang} could not be run (${cause.reason._tag})`) +
            "; install clang (Debian: apt-get install -y clang) or set CLANG to one",
          cause
        })
      ))
  )
  if (exitCode !== 0) {
    yield* fs.remove(tmp, { force: true }).pipe(Effect.ignore)
    return yield* new BpfCompileError({
      file: options.file,
      exitCode,
      diagnostics,
      message: `clang could not compile ${options.file} (exit ${exitCode}): ${firstError(diagnostics)}`
    })
  }
  yield* fs.rename(tmp, output).pipe(
    Effect.mapError((cause) =>
      new BpfToolchainIncomplete({ path: output, message: `could not write ${output}: ${cause.message}`, cause })
    )
  )
  return { output, diagnostics } satisfies BuildResult
})

const buildCommand = Command.make(
  "build",
  {
    file: Argument.String("file").pipe(Argument.withDescription("The BPF C source, e.g. my_probe.bpf.c")),
    output: Flag.String("output").pipe(
      Flag.withAlias("o"),
      Flag.withDescription("The object to write (default: beside the source, .bpf.c -> .bpf.o)"),
      Flag.optional
    )
  },
  ({ file, output }) =>
    Effect.gen(function*() {
      yield* Lifecycle.commandStarted(false)
      const result = yield* build({ file, output: Option.getOrUndefined(output) })
      // Warnings are clang's to word; the path on stdout is what a script would want.
      if (result.diagnostics !== "") yield* Console.error(result.diagnostics.trimEnd())
      yield* Console.log(result.output)
    }).pipe(
      Effect.catch((error: BpfBuildError) =>
        Effect.gen(function*() {
          // clang's own message first (file, line, caret), then the one line every CLI error is.
          if (error._tag === "BpfCompileError" && error.diagnostics !== "") {
            yield* Console.error(error.diagnostics.trimEnd())
          }
          yield* Console.error(`probescope: ${error.message}`)
          Lifecycle.setExitCode(Lifecycle.ExitCode.error)
        })
      )
    )
).pipe(
  Command.withDescription(
    "Compile a BPF C program with probescope's headers (bpf/include/probescope, vmlinux.h) and clang flags"
  )
)

/** `probescope bpf ...`: BPF programs of the user's own probes. */
export const command = Command.make("bpf").pipe(
  Command.withDescription("BPF programs for your own probes"),
  Command.withSubcommands([buildCommand])
)
