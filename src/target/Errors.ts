/**
 * Typed errors of target analysis. Every parser failure ends as one of these: a corrupt or hostile binary must never
 * crash or hang the agent, only fail its analysis.
 */
import { Schema } from "effect"

/** The file does not start with the ELF magic. */
export class NotElf extends Schema.TaggedError<NotElf>()("NotElf", {
  path: Schema.String,
  message: Schema.String
}) {}

/** A structure of the ELF file lies (partly) outside the file. `structure` names it, e.g. "section header 12". */
export class TruncatedElf extends Schema.TaggedError<TruncatedElf>()("TruncatedElf", {
  path: Schema.String,
  structure: Schema.String,
  message: Schema.String
}) {}

/** A structure of the ELF file is inconsistent (bad class, entry size, string index...). */
export class CorruptElf extends Schema.TaggedError<CorruptElf>()("CorruptElf", {
  path: Schema.String,
  structure: Schema.String,
  message: Schema.String
}) {}

/** A valid ELF file for a machine other than x86-64 (arm64 is recognised and named). */
export class UnsupportedArch extends Schema.TaggedError<UnsupportedArch>()("UnsupportedArch", {
  path: Schema.String,
  arch: Schema.String,
  message: Schema.String
}) {}

/** No Go build information: not a Go program (or one built by a toolchain older than 1.13). */
export class NotGo extends Schema.TaggedError<NotGo>()("NotGo", {
  path: Schema.String,
  message: Schema.String
}) {}

/** Built by a Go older than 1.17: no register ABI, which the probes assume. */
export class GoTooOld extends Schema.TaggedError<GoTooOld>()("GoTooOld", {
  path: Schema.String,
  goVersion: Schema.String,
  message: Schema.String
}) {}

/** The `.go.buildinfo` section exists but cannot be decoded. */
export class CorruptBuildInfo extends Schema.TaggedError<CorruptBuildInfo>()("CorruptBuildInfo", {
  path: Schema.String,
  message: Schema.String
}) {}

/** No `.symtab` and no usable `.gopclntab`: functions cannot be located. */
export class StrippedNoPclntab extends Schema.TaggedError<StrippedNoPclntab>()("StrippedNoPclntab", {
  path: Schema.String,
  message: Schema.String
}) {}

/** DWARF sections exist but cannot be decoded (struct offsets then come from the table only). */
export class CorruptDwarf extends Schema.TaggedError<CorruptDwarf>()("CorruptDwarf", {
  path: Schema.String,
  message: Schema.String
}) {}

/** No such process (or its executable is gone). */
export class ProcessNotFound extends Schema.TaggedError<ProcessNotFound>()("ProcessNotFound", {
  pid: Schema.Number,
  message: Schema.String
}) {}

/** The process exists but its executable cannot be read (permission, or a kernel thread without one). */
export class ProcessUnreadable extends Schema.TaggedError<ProcessUnreadable>()("ProcessUnreadable", {
  pid: Schema.Number,
  message: Schema.String
}) {}

/** The file cannot be opened or read. */
export class FileUnreadable extends Schema.TaggedError<FileUnreadable>()("FileUnreadable", {
  path: Schema.String,
  message: Schema.String
}) {}

/** A native binary stripped of `.symtab` with no `.dynsym` either (a static, stripped executable): no function has
 * a name to attach to. */
export class NoSymbols extends Schema.TaggedError<NoSymbols>()("NoSymbols", {
  path: Schema.String,
  message: Schema.String
}) {}

/** Any error of analysing a native (C, C++, Rust) file. */
export type NativeAnalysisError = NotElf | TruncatedElf | CorruptElf | UnsupportedArch | NoSymbols | FileUnreadable

/** Any error of reading a process's mapped objects. */
export type MapsError = ProcessNotFound | ProcessUnreadable

/** Any error of analysing a file. */
export type AnalysisError =
  | NotElf
  | TruncatedElf
  | CorruptElf
  | UnsupportedArch
  | NotGo
  | GoTooOld
  | CorruptBuildInfo
  | StrippedNoPclntab
  | FileUnreadable

/** Any error of analysing a process. */
export type ProcessAnalysisError = AnalysisError | ProcessNotFound | ProcessUnreadable

/**
 * The offsets table (for binaries without DWARF) records `module` at some versions only, and `version` is in none of
 * their release lines. `covered` lists the lines it records, e.g. "1.60–1.85".
 */
export class ModuleVersionNotCovered extends Schema.TaggedError<ModuleVersionNotCovered>()("ModuleVersionNotCovered", {
  module: Schema.String,
  version: Schema.String,
  covered: Schema.String,
  message: Schema.String
}) {}

/** The offsets table records `module` at `version`, but not for the binary's Go release line. */
export class GoVersionNotCovered extends Schema.TaggedError<GoVersionNotCovered>()("GoVersionNotCovered", {
  module: Schema.String,
  version: Schema.String,
  goVersion: Schema.String,
  covered: Schema.String,
  message: Schema.String
}) {}

/**
 * The offsets table has no such field: no module of the binary records the type (`module` undefined), or the type
 * or field does not exist in the module's version the binary has (renamed, added later, removed).
 */
export class FieldNotInTable extends Schema.TaggedError<FieldNotInTable>()("FieldNotInTable", {
  type: Schema.String,
  field: Schema.String,
  module: Schema.optional(Schema.String),
  version: Schema.optional(Schema.String),
  message: Schema.String
}) {}

/** Why the offsets table gives no offset for a field. */
export type OffsetUnavailable = ModuleVersionNotCovered | GoVersionNotCovered | FieldNotInTable
