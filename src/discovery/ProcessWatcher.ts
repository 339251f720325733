/**
 * The daemon probe behind discovery: `bpf/discovery.bpf.c` on the sched exec/exit tracepoints (BTF-typed raw
 * tracepoints: no tracefs, no kprobes). It emits no telemetry, so it is a daemon; its records are process events
 * read by `Discovery`, not spans.
 */
import * as Probe from "../probe/Probe.ts"

export const ProcessWatcher = Probe.daemon({
  name: "discovery/process",
  object: Probe.objectFile("discovery"),
  manifest: {
    tracepoints: [
      { program: "discovery_exec", category: "sched", name: "sched_process_exec" },
      { program: "discovery_exit", category: "sched", name: "sched_process_exit" }
    ]
  }
})
