import { assert, describe, it, layer } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import { Effect } from "effect"
import * as Doctor from "../../src/cli/Doctor.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { buildAll } from "../kernel/fixtures.ts"

buildAll()

/** The lockdown this machine's kernel forces (its config), which the bpf_probe_write_user detail quotes. */
const LOCKDOWN = "kernel is built to force lockdown (integrity)"

const CGROUP2 = "/sys/fs/cgroup/unified"
/** A pid that is not running: the cgroup a doctor killed mid-check would have left. */
const DEAD_PID = 4_000_000

layer(BpfLive.layer, { excludeTestServices: true })("doctor on this machine (kernel)", (it) => {
  it.effect("finds every feature but bpf_probe_write_user (forbidden by lockdown) and says so per probe", () =>
    Effect.gen(function*() {
      fs.mkdirSync(`${CGROUP2}/probescope-doctor-${DEAD_PID}`, { recursive: true })
      const report = yield* Doctor.run()
      const libbpf = report.checks.find((c) => c.name === "libbpf")!.detail
      assert.deepStrictEqual(report.checks, [
        { name: "kernel", ok: true, required: false, detail: os.release() },
        { name: "libbpf", ok: true, required: false, detail: libbpf },
        { name: "privileges", ok: true, required: true, detail: "root" },
        { name: "btf", ok: true, required: true, detail: "/sys/kernel/btf/vmlinux" },
        { name: "ringbuf", ok: true, required: true, detail: "BPF_MAP_TYPE_RINGBUF map created" },
        { name: "bpf_loop", ok: true, required: true, detail: "a program calling bpf_loop passed the verifier" },
        {
          name: "uprobe-roundtrip",
          ok: true,
          required: true,
          detail: `event from pid ${process.pid} via libc.so.6:getrusage, detached, nothing left`
        },
        {
          name: "uprobe_multi",
          ok: true,
          required: false,
          detail: "uprobe_multi links: one link per program and file, detached in one batch"
        },
        { name: "tracepoints", ok: true, required: true, detail: "tp_btf/sched_process_exec attached and detached" },
        {
          name: "cgroup",
          ok: true,
          required: false,
          detail: "sock_ops attached to a cgroup under /sys/fs/cgroup/unified and detached"
        },
        {
          name: "bpf_probe_write_user",
          ok: false,
          required: false,
          detail: "forbidden: the verifier refused a program calling it (\"program of this type cannot use helper " +
            `bpf_probe_write_user#36"); ${LOCKDOWN}`
        }
      ])
      assert.match(libbpf, /^1\.\d+$/)
      assert.isTrue(report.ok)
      assert.deepStrictEqual(report.probes.map((p) => [p.name, p.works, p.detail]), [
        ["go_context", true, "works"],
        ["nethttp_server", true, "works"],
        [
          "nethttp_client",
          true,
          "works; header injection off: bpf_probe_write_user forbidden; same-host propagation still works"
        ],
        ["discovery", true, "works"]
      ])
      // The check's cgroup is gone, so is one a killed doctor left, and no BPF object of ours is left open.
      assert.isFalse(fs.existsSync(`${CGROUP2}/probescope-doctor-${process.pid}`))
      assert.isFalse(fs.existsSync(`${CGROUP2}/probescope-doctor-${DEAD_PID}`))
      const fds = BpfLive.ownBpfFds()
      assert.strictEqual(fds.progs + fds.maps + fds.links + fds.perfEvents, 0)
    }))
})

describe("probescope doctor --json (kernel)", () => {
  it("prints the checks and the per-probe section and exits 0", () => {
    const out = execFileSync(process.execPath, ["src/cli/main.ts", "doctor", "--json"], { encoding: "utf8" })
    const report = JSON.parse(out) as Doctor.Report
    assert.isTrue(report.ok)
    assert.deepStrictEqual(report.checks.map((c) => c.name), [
      "kernel", "libbpf", "privileges", "btf", "ringbuf", "bpf_loop", "uprobe-roundtrip", "uprobe_multi",
      "tracepoints", "cgroup", "bpf_probe_write_user"
    ])
    assert.deepStrictEqual(report.probes.map((p) => [p.name, p.works, p.missing, p.degraded]), [
      ["go_context", true, [], []],
      ["nethttp_server", true, [], []],
      ["nethttp_client", true, [], ["bpf_probe_write_user"]],
      ["discovery", true, [], []]
    ])
  })
})
