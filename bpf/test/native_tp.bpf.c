/* A tracepoint instrument for the native-target kernel tests: every getpid system call of a target process, from
 * the BTF-typed sys_enter tracepoint, filtered in the kernel by the per-pid entry. */
#include "common.h"

struct native_target {
  u8 on;
};
PS_TARGETS(struct native_target);

struct native_event {
  u32 pid;
  u32 kind; /* 3: sys_enter of getpid */
  u64 value; /* the syscall number */
};
PS_RECORD(native_event);

SEC("tp_btf/sys_enter")
int BPF_PROG(tp_sys_enter, struct pt_regs *regs, long id) {
  if (id != 39 /* __NR_getpid on x86-64 */)
    return 0;
  if (!ps_target())
    return 0;
  struct native_event e = {.pid = bpf_get_current_pid_tgid() >> 32, .kind = 3, .value = id};
  ps_submit(&e, sizeof(e));
  return 0;
}
