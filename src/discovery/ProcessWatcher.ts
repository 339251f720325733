/**
 * The daemon probe behind discovery: `bpf/discovery.bpf.c` on the sched exec/exit tracepoints (BTF-typed raw
 * tracepoints: no tracefs, no kprobes). It emits no telemetry, so it is a daemon; its records are process events
 * read by `Discovery`, not spans.
 */
import * as Probe from "../probe/Probe.ts"

export const ProcessWatcher = Probe.daemon({
  name: "discovery/process",
  object: "discovery",
  manifest: {
    tracepoints: [
      { program: "discovery_exec", category: "sched", name: "sched_process_exec" },
      { program: "discovery_exit", category: "sched", name: "sched_process_exit" }
    ]
  },
  // Every exec or exit wakes the agent (when it has read all before it), and its ring has no drain timer ticking:
  // an idle agent is woken only by processes starting and ending, not by a timer. The probes' rings keep the timer
  // (a wakeup from inside a traced request is what they avoid, native/src/ringbuf.cc); this one's wakeups come from
  // the exec and exit paths, which cost far more than the wakeup. A new process is also seen at once, not at a tick.
  constants: () => ({ ps_wakeup_bytes: 0n })
})
