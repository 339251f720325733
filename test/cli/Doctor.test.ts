import { assert, describe, it } from "@effect/vitest"
import {
  btf,
  cgroup2Mount,
  type Check,
  FEATURES,
  formatTable,
  NEEDS,
  privileges,
  verdict,
  verdicts
} from "../../src/cli/Doctor.ts"
import { Option } from "effect"

describe("doctor checks", () => {
  it("reads capabilities from CapEff", () => {
    const root = privileges("Name:\tnode\nCapEff:\t000001ffffffffff\n", 0)
    assert.deepStrictEqual(root, { name: "privileges", ok: true, required: true, detail: "root" })
    // CAP_BPF (39) and CAP_PERFMON (38) only
    const bpfOnly = privileges(`CapEff:\t${((1n << 39n) | (1n << 38n)).toString(16).padStart(16, "0")}\n`, 1000)
    assert.deepStrictEqual(bpfOnly, { name: "privileges", ok: true, required: true, detail: "CAP_BPF + CAP_PERFMON" })
    const none = privileges("CapEff:\t0000000000000000\n", 1000)
    assert.isFalse(none.ok)
    assert.match(none.detail, /^missing CAP_BPF and CAP_PERFMON: run as root/)
    const perfmonOnly = privileges(`CapEff:\t${(1n << 38n).toString(16)}\n`, 1000)
    assert.match(perfmonOnly.detail, /^missing CAP_BPF:/)
  })

  it("formats checks (FAIL for a required one, no for an optional one) then one line per probe", () => {
    const text = formatTable({
      ok: false,
      checks: [
        { name: "kernel", ok: true, required: false, detail: "6.18" },
        { name: "bpf_loop", ok: false, required: true, detail: "refused" },
        { name: "uprobe_multi", ok: false, required: false, detail: "absent" }
      ],
      probes: [
        { name: "go_context", works: true, detail: "works", missing: [], degraded: [] },
        {
          name: "nethttp_server",
          works: false,
          detail: "will not work: needs bpf_loop",
          missing: ["bpf_loop"],
          degraded: []
        }
      ]
    })
    assert.strictEqual(
      text,
      [
        "ok    kernel        6.18",
        "FAIL  bpf_loop      refused",
        "no    uprobe_multi  absent",
        "",
        "probes",
        "ok    go_context      works",
        "FAIL  nethttp_server  will not work: needs bpf_loop",
        "",
        "1 required check(s) failed"
      ].join("\n")
    )
    assert.strictEqual(
      formatTable({ ok: true, checks: [{ name: "btf", ok: true, required: true, detail: "x" }], probes: [] }),
      "ok    btf  x\n\nall required checks passed"
    )
  })
})

/** Checks where every named feature is available and the rest are not. */
const having = (...available: ReadonlyArray<string>): Array<Check> =>
  ["privileges", ...FEATURES].map((name) => ({ name, ok: available.includes(name), required: true, detail: "" }))

const everything = ["privileges", ...FEATURES]

describe("per-probe verdicts", () => {
  it("every probe works with every feature", () => {
    const result = verdicts(["go_context", "nethttp_server", "nethttp_client"], having(...everything))
    assert.deepStrictEqual(result.map((v) => [v.name, v.works, v.detail]), [
      ["go_context", true, "works"],
      ["nethttp_server", true, "works"],
      ["nethttp_client", true, "works"],
      ["discovery", true, "works"]
    ])
  })

  it("under lockdown the client works without header injection, the others are untouched", () => {
    const result = verdicts(
      ["go_context", "nethttp_server", "nethttp_client"],
      having(...everything.filter((f) => f !== "bpf_probe_write_user"))
    )
    assert.deepStrictEqual(result[2], {
      name: "nethttp_client",
      works: true,
      detail: "works; header injection off: bpf_probe_write_user forbidden; same-host propagation still works",
      missing: [],
      degraded: ["bpf_probe_write_user"]
    })
    assert.deepStrictEqual(result.filter((v) => v.degraded.length > 0).map((v) => v.name), ["nethttp_client"])
  })

  it("without bpf_loop (kernels before 5.17) the HTTP probes will not work, go_context still does", () => {
    const result = verdicts(
      ["go_context", "nethttp_server", "nethttp_client"],
      having(...everything.filter((f) => f !== "bpf_loop"))
    )
    assert.deepStrictEqual(result.map((v) => [v.name, v.works, v.detail]), [
      ["go_context", true, "works"],
      ["nethttp_server", false, "will not work: needs bpf_loop"],
      ["nethttp_client", false, "will not work: needs bpf_loop"],
      ["discovery", true, "works"]
    ])
  })

  it("without BTF or tp_btf only discovery (--exe, --all-go) is lost", () => {
    const without = everything.filter((f) => f !== "btf" && f !== "tracepoints")
    const result = verdicts(["nethttp_server"], having(...without))
    assert.deepStrictEqual(result.map((v) => [v.name, v.works, v.detail]), [
      ["nethttp_server", true, "works"],
      ["discovery", false, "will not work: needs btf, tracepoints"]
    ])
  })

  it("without uprobe_multi every probe works, detaching slowly", () => {
    const v = verdict("go_context", NEEDS["go_context"]!, Object.fromEntries(
      having(...everything.filter((f) => f !== "uprobe_multi")).map((c) => [c.name, c.ok])
    ))
    assert.strictEqual(
      v.detail,
      "works; one perf-event link per attach point (no uprobe_multi): detaching takes ~100 ms per link"
    )
  })

  it("without privileges nothing works, and a --probe module's probe needs uprobes and a ring buffer", () => {
    const result = verdicts(["example/work"], having())
    assert.deepStrictEqual(result.map((v) => v.detail), [
      "will not work: needs privileges, ringbuf, uprobe-roundtrip",
      "will not work: needs privileges, ringbuf, btf, tracepoints"
    ])
  })
})

describe("machine facts", () => {
  it("finds the cgroup v2 mount in mountinfo, hybrid or unified", () => {
    const hybrid = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n" +
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    assert.deepStrictEqual(cgroup2Mount(hybrid), Option.some("/sys/fs/cgroup/unified"))
    const unified = "30 1 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert.deepStrictEqual(cgroup2Mount(unified), Option.some("/sys/fs/cgroup"))
    assert.deepStrictEqual(cgroup2Mount("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"), Option.none())
  })

  it("says how to get BTF when the kernel has none", () => {
    assert.deepStrictEqual(btf(() => false), {
      name: "btf",
      ok: false,
      required: true,
      detail: "/sys/kernel/btf/vmlinux is absent: the kernel was built without CONFIG_DEBUG_INFO_BTF"
    })
  })
})
