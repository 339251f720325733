/* A tracepoint this kernel does not have next to one it has, for the kernel binding's "load without absent
 * tracepoints" path: libbpf cannot resolve btf_trace_probescope_absent, so the object only loads without that program,
 * and attaching it says why. */
#include "common.h"

struct absent_target {
  u8 on;
};
PS_TARGETS(struct absent_target);

struct native_event {
  u32 pid;
  u32 kind;
  u64 value;
};
PS_RECORD(native_event);

SEC("tp_btf/probescope_absent")
int BPF_PROG(tp_absent) { return 0; }

SEC("tp_btf/sys_enter")
int BPF_PROG(tp_present, struct pt_regs *regs, long id) { return 0; }
