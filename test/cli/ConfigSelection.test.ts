/**
 * The config file's selection keys (ports, containers, cgroups, executable globs) and `resource.commandArgs`:
 * decoded, merged with the command line as a union, and each bad value one line naming the key's path.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as ConfigFile from "../../src/cli/ConfigFile.ts"
import * as ProbeList from "../../src/cli/ProbeList.ts"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-config-selection-"))
const write = (name: string, text: string) => {
  const file = Path.join(dir, name)
  Fs.writeFileSync(file, text)
  return file
}

const ID = "3f4e5d6c7b8a"

describe("config file: selection and resource keys", () => {
  it.effect("decodes ports, containers, cgroups, globs and commandArgs; the command line adds to them", () =>
    Effect.gen(function*() {
      const file = write(
        "sel.yaml",
        [
          "selection:",
          "  exes: [\"bin/*/api\"]",
          "  ports: [8080, 9090]",
          `  containers: [\"${ID}\"]`,
          "  cgroups: [\"/kubepods.slice/**\"]",
          "resource:",
          "  commandArgs: true",
          ""
        ].join("\n")
      )
      const setup = yield* ProbeList.setup({
        probes: [],
        builtins: Option.none(),
        config: Option.some(file),
        ports: [8080, 7070],
        cgroups: ["/system.slice/*.scope"]
      })
      assert.deepStrictEqual(setup.selection, {
        pids: [],
        exes: [Path.join(dir, "bin/*/api")],
        ports: [8080, 9090, 7070],
        containers: [ID],
        cgroups: ["/kubepods.slice/**", "/system.slice/*.scope"],
        allGo: false
      })
      assert.strictEqual(setup.commandArgs, true)
      const none = yield* ProbeList.setup({ probes: [], builtins: Option.none(), config: Option.none() })
      assert.strictEqual(none.commandArgs, undefined)
      assert.isFalse(ProbeList.selectsAnything(none.selection))
    }))

  it.effect("each bad value is one line naming the file and the key's path", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["selection: { ports: [8080, 70000] }", "selection.ports[1]: Expected a value between 1 and 65535"],
        ["selection: { ports: [0] }", "selection.ports[0]: Expected a value between 1 and 65535"],
        ["selection: { ports: [\"http\"] }", "selection.ports[0]: Expected number"],
        [
          "selection: { containers: [nginx] }",
          "selection.containers[0]: Expected a container id or a prefix of one (1 to 64 lowercase hex digits)"
        ],
        [
          "selection: { cgroups: [kubepods.slice] }",
          "selection.cgroups[0]: Expected an absolute cgroup path (as /proc/PID/cgroup shows it)"
        ],
        ["selection: { port: [8080] }", "selection.port: unknown key"],
        ["resource: { commandArgs: yes }", "resource.commandArgs: Expected boolean"],
        ["resource: { args: true }", "resource.args: unknown key"]
      ]
      for (const [text, message] of cases) {
        const file = write("bad.yaml", `${text}\n`)
        const error = yield* Effect.flip(ConfigFile.load(file))
        assert.strictEqual(error._tag, "ConfigFileError")
        assert.strictEqual(error.message, `config ${file}: ${message}`)
      }
    }))
})
