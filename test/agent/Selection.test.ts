import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { onlyExes } from "../../src/agent/internal/driver.ts"
import * as Selecting from "../../src/agent/internal/selection.ts"
import type { CgroupInfo } from "../../src/discovery/Cgroup.ts"

const ID = "3f4e5d6c7b8a99881726354453627180a1b2c3d4e5f60718293a4b5c6d7e8f90"

const view = (
  pid: number,
  exe: string,
  cgroup: CgroupInfo = { path: "/", paths: ["/"] },
  ports: ReadonlyArray<number> = []
): Selecting.ProcessView => ({ pid, exe, cgroup: () => cgroup, ports: () => ports })

describe("Selection", () => {
  it.effect("validate: each unusable selector is one line naming it and what is expected", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [Parameters<typeof Selecting.validate>[0], string, string]> = [
        [{ pids: [], exes: [], ports: [70000] }, "--port 70000", "--port 70000: not a TCP port (expected 1 to 65535)"],
        [{ pids: [], exes: [], ports: [0] }, "--port 0", "--port 0: not a TCP port (expected 1 to 65535)"],
        [
          { pids: [], exes: ["srv/*/api"] },
          "--exe srv/*/api",
          "--exe srv/*/api: a glob must be an absolute path (e.g. /srv/*/bin/api)"
        ],
        [
          { pids: [], exes: [], containers: ["nginx"] },
          "--container nginx",
          "--container nginx: not a container id or a prefix of one (expected 1 to 64 lowercase hex digits)"
        ],
        [
          { pids: [], exes: [], cgroups: ["kubepods.slice/*"] },
          "--cgroup kubepods.slice/*",
          "--cgroup kubepods.slice/*: not an absolute cgroup path (as /proc/PID/cgroup shows it, e.g. " +
          "/kubepods.slice/**)"
        ]
      ]
      for (const [selection, selector, message] of cases) {
        const error = yield* Effect.flip(Selecting.validate(selection))
        assert.strictEqual(error._tag, "SelectionError")
        assert.strictEqual(error.selector, selector)
        assert.strictEqual(error.message, message)
      }
      yield* Selecting.validate({
        pids: [1],
        exes: ["/srv/*/bin/api", "relative/plain/path"],
        ports: [1, 65535],
        containers: [ID.slice(0, 12)],
        cgroups: ["/kubepods.slice/**"]
      })
    }))

  it("compile: a union; each match names its selector as the command line spells it", () => {
    const m = Selecting.compile({
      pids: [42],
      exes: ["/srv/*/bin/api"],
      ports: [8080],
      containers: [ID.slice(0, 12)],
      cgroups: ["/system.slice/*.scope"]
    })
    assert.deepStrictEqual(m.matches(view(42, "/usr/bin/sleep")), ["--pid 42"])
    assert.deepStrictEqual(m.matches(view(7, "/srv/users/bin/api")), ["--exe /srv/*/bin/api"])
    assert.deepStrictEqual(m.matches(view(7, "/bin/x", undefined, [8080])), ["--port 8080"])
    const inDocker: CgroupInfo = { path: `/system.slice/docker-${ID}.scope`, paths: [], containerId: ID }
    assert.deepStrictEqual(m.matches(view(7, "/bin/x", { ...inDocker, paths: [inDocker.path] })), [
      `--container ${ID.slice(0, 12)}`,
      "--cgroup /system.slice/*.scope"
    ])
    assert.deepStrictEqual(m.matches(view(7, "/bin/x")), [])
    assert.deepStrictEqual(m.labels, [
      "--exe /srv/*/bin/api",
      `--container ${ID.slice(0, 12)}`,
      "--cgroup /system.slice/*.scope",
      "--port 8080"
    ])
  })

  it("compile: executables (path or glob) take every process of the file; the others one process", () => {
    const m = Selecting.compile({ pids: [], exes: ["/srv/*/api"], ports: [8080] })
    assert.isTrue(m.wide(view(1, "/srv/a/api")))
    assert.isFalse(m.wide(view(1, "/bin/x", undefined, [8080])))
  })

  it("compile: the cgroup is not read unless a container or cgroup selector asks", () => {
    let reads = 0
    const counting = (pid: number, exe: string): Selecting.ProcessView => ({
      pid,
      exe,
      cgroup: () => {
        reads++
        return { path: "/", paths: ["/"] }
      },
      ports: () => []
    })
    Selecting.compile({ pids: [1], exes: ["/bin/a"] }).matches(counting(2, "/bin/b"))
    assert.strictEqual(reads, 0)
    Selecting.compile({ pids: [], exes: [], containers: ["ab"] }).matches(counting(2, "/bin/b"))
    assert.strictEqual(reads, 1)
  })

  it("unmatchedReason: what the start-up warning says per kind of selector", () => {
    assert.strictEqual(Selecting.unmatchedReason("--port 8080"), "no process listens on port 8080; watching for one")
    assert.strictEqual(Selecting.unmatchedReason("--exe /srv/*"), "no running process matches; watching for one")
    assert.strictEqual(Selecting.unmatchedReason("--container ab"), "no running process is in it; watching for one")
  })

  it("onlyExes: the files a selection of named files and pids can select, else undefined (every exec looked at)", () => {
    assert.deepStrictEqual(onlyExes({ pids: [], exes: ["/srv/api", "/srv/worker"] }), ["/srv/api", "/srv/worker"])
    assert.deepStrictEqual(onlyExes({ pids: [42], exes: [] }), [], "pids only: no exec of a new process can match")
    assert.deepStrictEqual(onlyExes({ pids: [42], exes: ["/srv/api"], ports: [], containers: [] }), ["/srv/api"])
    for (const [selection, why] of [
      [{ pids: [], exes: ["/srv/*/api"] }, "a glob"],
      [{ pids: [], exes: ["/srv/api"], goPredicate: () => true }, "--all-go"],
      [{ pids: [], exes: ["/srv/api"], ports: [8080] }, "a port"],
      [{ pids: [], exes: [], containers: ["3f4e"] }, "a container"],
      [{ pids: [], exes: [], cgroups: ["/kubepods.slice/**"] }, "a cgroup"]
    ] as const) {
      assert.isUndefined(onlyExes(selection), why)
    }
  })
})
