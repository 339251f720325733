/**
 * `probescope run --config FILE` / `list --config FILE`: the probes, their settings, the selection and the export
 * settings in one YAML or JSON file, decoded with Schema. An unknown key or a bad value is a `ConfigFileError`
 * naming the file and the key's path, in one line.
 *
 * Export settings are the `OTEL_*` variables under other names; a value given here wins over the variable, which is
 * how the agent reads them (`overrides` becomes the first `ConfigProvider`, the environment the fallback).
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Effect, Exit, Schema, SchemaIssue } from "effect"
import { SamplerName } from "../probe/TracingConfig.ts"
import { ExporterName, OtlpProtocol } from "../telemetry/TelemetryConfig.ts"

/** The config file is unreadable, not YAML/JSON, or does not match the schema. */
export class ConfigFileError extends Schema.TaggedError<ConfigFileError>()("ConfigFileError", {
  file: Schema.String,
  /** The key's path in the file (`selection.pids[0]`), or "" when the whole file is at fault. */
  path: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

const HttpUrl = Schema.String.pipe(
  Schema.check(
    Schema.makeFilter((s: string) => {
      const scheme = URL.canParse(s) ? new URL(s).protocol : undefined
      return scheme === "http:" || scheme === "https:" ? undefined : "Expected an http(s) URL"
    })
  )
)

const NonEmpty = Schema.String.pipe(Schema.check(Schema.isNonEmpty()))
const Pid = Schema.Int.pipe(Schema.check(Schema.isGreaterThan(0)))
const Port = Schema.Int.pipe(Schema.check(Schema.isBetween({ minimum: 1, maximum: 65535 })))
const ContainerId = Schema.String.pipe(
  Schema.check(
    Schema.makeFilter((s: string) =>
      /^[0-9a-f]{1,64}$/.test(s)
        ? undefined
        : "Expected a container id or a prefix of one (1 to 64 lowercase hex digits)"
    )
  )
)
const CgroupGlob = Schema.String.pipe(
  Schema.check(
    Schema.makeFilter((s: string) =>
      s.startsWith("/") ? undefined : "Expected an absolute cgroup path (as /proc/PID/cgroup shows it)"
    )
  )
)
const Ratio = Schema.Number.pipe(Schema.check(Schema.isBetween({ minimum: 0, maximum: 1 })))

/** The file's shape; every key is optional, and no other key is allowed. */
export const ConfigFile = Schema.Struct({
  probes: Schema.optionalKey(Schema.Struct({
    /** Run the built-in probes (default true; `--no-builtins` turns them off). */
    builtins: Schema.optionalKey(Schema.Boolean),
    /** Probe modules, relative to the config file. */
    modules: Schema.optionalKey(Schema.Array(NonEmpty)),
    /** Each probe's config by probe name (`Probe.ProbeSettings`), decoded by the probe's own schema. */
    settings: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
  })),
  selection: Schema.optionalKey(Schema.Struct({
    pids: Schema.optionalKey(Schema.Array(Pid)),
    /** Executables or globs of them, relative to the config file. */
    exes: Schema.optionalKey(Schema.Array(NonEmpty)),
    /** TCP ports: the processes listening on them (as `--port`). */
    ports: Schema.optionalKey(Schema.Array(Port)),
    /** Container ids or prefixes (as `--container`). */
    containers: Schema.optionalKey(Schema.Array(ContainerId)),
    /** Cgroup path globs (as `--cgroup`). */
    cgroups: Schema.optionalKey(Schema.Array(CgroupGlob)),
    allGo: Schema.optionalKey(Schema.Boolean)
  })),
  resource: Schema.optionalKey(Schema.Struct({
    /** `process.command_args` in each resource (PROBESCOPE_RESOURCE_COMMAND_ARGS); arguments can hold secrets. */
    commandArgs: Schema.optionalKey(Schema.Boolean)
  })),
  export: Schema.optionalKey(Schema.Struct({
    /** OTEL_EXPORTER_OTLP_ENDPOINT */
    endpoint: Schema.optionalKey(HttpUrl),
    /** OTEL_EXPORTER_OTLP_PROTOCOL */
    protocol: Schema.optionalKey(OtlpProtocol),
    /** OTEL_EXPORTER_OTLP_HEADERS, as a map */
    headers: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)),
    /** OTEL_SERVICE_NAME */
    serviceName: Schema.optionalKey(NonEmpty),
    /** OTEL_RESOURCE_ATTRIBUTES, as a map */
    resourceAttributes: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)),
    /** OTEL_TRACES_EXPORTER */
    traces: Schema.optionalKey(Schema.Array(ExporterName)),
    /** OTEL_METRICS_EXPORTER */
    metrics: Schema.optionalKey(Schema.Array(ExporterName)),
    /** OTEL_LOGS_EXPORTER */
    logs: Schema.optionalKey(Schema.Array(ExporterName)),
    /** OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG */
    sampler: Schema.optionalKey(Schema.Struct({
      name: SamplerName,
      ratio: Schema.optionalKey(Ratio)
    }))
  }))
})
export type ConfigFile = typeof ConfigFile.Type

/** `a.b[0].c` from an issue's path. */
const pathText = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (out, key) => typeof key === "number" ? `${out}[${key}]` : out === "" ? String(key) : `${out}.${String(key)}`,
    ""
  )

/** Decodes parsed file content; the first problem names its key path. */
export const decode = (file: string, content: unknown): Effect.Effect<ConfigFile, ConfigFileError> => {
  const exit = Schema.decodeUnknownExit(ConfigFile)(content ?? {}, { onExcessProperty: "error" })
  if (Exit.isSuccess(exit)) return Effect.succeed(exit.value)
  const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (reason === undefined || reason._tag !== "Fail") return Effect.die(exit.cause)
  const first = SchemaIssue.makeFormatterStandardSchemaV1()(reason.error.issue).issues[0]
  const path = pathText((first?.path ?? []).map((p) => typeof p === "object" && p !== null ? p.key : p))
  // Effect's wording for an excess property; said the way a config file's reader thinks of it.
  const raw = first?.message ?? reason.error.message
  const message = raw === "Expected no excess property" ? "unknown key" : raw
  return Effect.fail(
    new ConfigFileError({
      file,
      path,
      message: `config ${file}: ${path === "" ? "" : `${path}: `}${message}`,
      cause: reason.error
    })
  )
}

/** Reads and decodes a config file: `.json` as JSON, anything else as YAML (of which JSON is a subset). */
export const load = (file: string): Effect.Effect<ConfigFile, ConfigFileError> =>
  Effect.gen(function*() {
    const fail = (why: string, cause: unknown) =>
      new ConfigFileError({ file, path: "", message: `config ${file}: ${why}`, cause })
    const text = yield* Effect.try({
      try: () => Fs.readFileSync(file, "utf8"),
      catch: (e) => fail(`cannot read it: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, e)
    })
    const json = Path.extname(file) === ".json"
    // yaml (some 70 modules) is imported only here: a command without --config never loads it.
    const Yaml = json ? undefined : yield* Effect.tryPromise({
      try: () => import("yaml"),
      catch: (e) => fail(`cannot load the YAML parser: ${e instanceof Error ? e.message : String(e)}`, e)
    })
    const content = yield* Effect.try({
      try: () =>
        Yaml === undefined ? JSON.parse(text) as unknown : Yaml.parse(text, { prettyErrors: false }) as unknown,
      catch: (e) =>
        fail(`not valid ${json ? "JSON" : "YAML"}: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`, e)
    })
    return yield* decode(file, content)
  })

/** OTEL_* list syntax: `key=value` pairs, percent-encoded, comma-separated. */
const keyValues = (record: Readonly<Record<string, string>>) =>
  Object.entries(record).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join(",")

/** The `OTEL_*` variables the file's `export` section sets (they win over the environment's). */
export const overrides = (config: ConfigFile): Readonly<Record<string, string>> => {
  const e = config.export
  if (e === undefined) return {}
  const out: Record<string, string> = {}
  if (e.endpoint !== undefined) out["OTEL_EXPORTER_OTLP_ENDPOINT"] = e.endpoint
  if (e.protocol !== undefined) out["OTEL_EXPORTER_OTLP_PROTOCOL"] = e.protocol
  if (e.headers !== undefined) out["OTEL_EXPORTER_OTLP_HEADERS"] = keyValues(e.headers)
  if (e.serviceName !== undefined) out["OTEL_SERVICE_NAME"] = e.serviceName
  if (e.resourceAttributes !== undefined) out["OTEL_RESOURCE_ATTRIBUTES"] = keyValues(e.resourceAttributes)
  if (e.traces !== undefined) out["OTEL_TRACES_EXPORTER"] = e.traces.length === 0 ? "none" : e.traces.join(",")
  if (e.metrics !== undefined) out["OTEL_METRICS_EXPORTER"] = e.metrics.length === 0 ? "none" : e.metrics.join(",")
  if (e.logs !== undefined) out["OTEL_LOGS_EXPORTER"] = e.logs.length === 0 ? "none" : e.logs.join(",")
  if (e.sampler !== undefined) {
    out["OTEL_TRACES_SAMPLER"] = e.sampler.name
    if (e.sampler.ratio !== undefined) out["OTEL_TRACES_SAMPLER_ARG"] = String(e.sampler.ratio)
  }
  return out
}

/** Paths in the file are relative to it. */
export const resolve = (file: string, path: string): string => Path.resolve(Path.dirname(Path.resolve(file)), path)
