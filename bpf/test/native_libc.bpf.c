/* A shared-library probe for the native-target kernel tests: libc's getpid, entry (uprobe) and return (uretprobe),
 * filtered to the target processes by their per-pid entry, exactly as a real library probe filters. */
#include "common.h"

struct native_target {
  u8 on;
};
PS_TARGETS(struct native_target);

struct native_event {
  u32 pid;
  u32 kind; /* 1 entry, 2 return */
  u64 value; /* the return value */
};
PS_RECORD(native_event);

static __always_inline int emit(u32 kind, u64 value) {
  if (!ps_target())
    return 0;
  struct native_event e = {.pid = bpf_get_current_pid_tgid() >> 32, .kind = kind, .value = value};
  ps_submit(&e, sizeof(e));
  return 0;
}

SEC("uprobe")
int uprobe_getpid(struct pt_regs *ctx) { return emit(1, 0); }

SEC("uretprobe")
int uretprobe_getpid(struct pt_regs *ctx) { return emit(2, PT_REGS_RC(ctx)); }
