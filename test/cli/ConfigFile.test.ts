/**
 * `--config FILE`: YAML and JSON decoded with Schema; an unknown key or a bad value is one line naming the file and
 * the key's path; the export section becomes the OTEL_* values that win over the environment.
 */
import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as ConfigFile from "../../src/cli/ConfigFile.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-config-"))
const write = (name: string, text: string) => {
  const file = Path.join(dir, name)
  Fs.writeFileSync(file, text)
  return file
}

const full = `
probes:
  builtins: false
  modules: [./probes/work.js]
  settings:
    example/work: { minN: 500 }
selection:
  pids: [42]
  exes: [../bin/api]
  allGo: true
export:
  endpoint: http://collector:4318
  protocol: http/json
  headers: { authorization: "Bearer a=b", x-tenant: acme }
  serviceName: api
  resourceAttributes: { deployment.environment.name: prod }
  traces: [otlp, console]
  metrics: []
  logs: [console]
  sampler: { name: parentbased_traceidratio, ratio: 0.25 }
`

describe("config file", () => {
  it.effect("a full YAML file decodes, and its export section becomes OTEL_* values", () =>
    Effect.gen(function*() {
      const config = yield* ConfigFile.load(write("full.yaml", full))
      assert.deepStrictEqual(config.probes, {
        builtins: false,
        modules: ["./probes/work.js"],
        settings: { "example/work": { minN: 500 } }
      })
      assert.deepStrictEqual(config.selection, { pids: [42], exes: ["../bin/api"], allGo: true })
      assert.deepStrictEqual(ConfigFile.overrides(config), {
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20a%3Db,x-tenant=acme",
        OTEL_SERVICE_NAME: "api",
        OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=prod",
        OTEL_TRACES_EXPORTER: "otlp,console",
        OTEL_METRICS_EXPORTER: "none",
        OTEL_LOGS_EXPORTER: "console",
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0.25"
      })
      assert.strictEqual(ConfigFile.resolve(Path.join(dir, "full.yaml"), "../bin/api"), Path.resolve(dir, "../bin/api"))
    }))

  it.effect("the file's values win over the environment; what it leaves out comes from the environment", () =>
    Effect.gen(function*() {
      const config = yield* ConfigFile.load(write("export.json", `{"export": {"endpoint": "http://file:4318"}}`))
      const env = ConfigProvider.fromUnknown({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://env:4318",
        OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
        OTEL_SERVICE_NAME: "from-env"
      })
      const loaded = yield* TelemetryConfig.load.pipe(
        Effect.provide(ConfigProvider.layerAdd(ConfigProvider.fromUnknown(ConfigFile.overrides(config)), {
          asPrimary: true
        })),
        Effect.provide(ConfigProvider.layer(env))
      )
      assert.strictEqual(loaded.otlp.endpoint, "http://file:4318")
      assert.strictEqual(loaded.otlp.protocol, "grpc")
      assert.strictEqual(loaded.serviceName, "from-env")
      const name = yield* Config.String("OTEL_SERVICE_NAME").pipe(Effect.provide(ConfigProvider.layer(env)))
      assert.strictEqual(name, "from-env")
    }))

  const failures: ReadonlyArray<{ what: string; file: string; text: string; path: string; message: string }> = [
    {
      what: "an unknown key (YAML)",
      file: "unknown.yaml",
      text: "selection:\n  pid: [1]\n",
      path: "selection.pid",
      message: "selection.pid: unknown key"
    },
    {
      what: "an unknown top-level key (JSON)",
      file: "unknown.json",
      text: `{"exporter": {}}`,
      path: "exporter",
      message: "exporter: unknown key"
    },
    {
      what: "a bad value in a list (JSON)",
      file: "bad.json",
      text: `{"selection": {"pids": [12, 0]}}`,
      path: "selection.pids[1]",
      message: "selection.pids[1]: Expected a value greater than 0"
    },
    {
      what: "a bad value (YAML)",
      file: "bad.yaml",
      text: "export:\n  endpoint: ftp://collector\n",
      path: "export.endpoint",
      message: "export.endpoint: Expected an http(s) URL"
    },
    {
      what: "a sampler ratio out of range (YAML)",
      file: "ratio.yaml",
      text: "export:\n  sampler: { name: traceidratio, ratio: 2 }\n",
      path: "export.sampler.ratio",
      message: "export.sampler.ratio: Expected a value between 0 and 1"
    },
    {
      what: "a protocol that does not exist (YAML)",
      file: "protocol.yaml",
      text: "export:\n  protocol: http\n",
      path: "export.protocol",
      message: `export.protocol: Expected "http/protobuf" | "http/json" | "grpc"`
    }
  ]
  for (const f of failures) {
    it.effect(`${f.what}: ConfigFileError naming the key path`, () =>
      Effect.gen(function*() {
        const file = write(f.file, f.text)
        const error = yield* Effect.flip(ConfigFile.load(file))
        assert.strictEqual(error._tag, "ConfigFileError")
        assert.strictEqual(error.path, f.path)
        assert.strictEqual(error.message, `config ${file}: ${f.message}`)
      }))
  }

  it.effect("not YAML, not JSON, absent: one line each", () =>
    Effect.gen(function*() {
      const yaml = write("broken.yaml", "selection: [1\n")
      const e1 = yield* Effect.flip(ConfigFile.load(yaml))
      assert.strictEqual(e1._tag, "ConfigFileError")
      assert.match(e1.message, new RegExp(`^config ${yaml}: not valid YAML: [^\\n]+$`))
      const json = write("broken.json", "{selection")
      const e2 = yield* Effect.flip(ConfigFile.load(json))
      assert.match(e2.message, new RegExp(`^config ${json}: not valid JSON: [^\\n]+$`))
      const absent = Path.join(dir, "absent.yaml")
      const e3 = yield* Effect.flip(ConfigFile.load(absent))
      assert.strictEqual(e3.message, `config ${absent}: cannot read it: ENOENT`)
    }))

  it.effect("an empty file is an empty config", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* ConfigFile.load(write("empty.yaml", "")), {})
    }))
})
