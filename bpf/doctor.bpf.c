/* A minimal uprobe used by the round-trip check (`probescope doctor`) and the kernel tests: each hit writes one
 * record with the caller's identity, the Go function's first argument and a cookie set at load time. */
#include "common.h"

/* Set before load; echoed in every record so the user side can tell which load produced it. */
const volatile u64 doctor_cookie = 0;

struct doctor_event {
  u32 pid;  /* thread id */
  u32 tgid; /* process id */
  u64 arg1; /* Go ABI first integer argument (RAX) */
  u64 cookie;
  u64 ktime_ns;
};

SEC("uprobe")
int doctor_uprobe(struct pt_regs *ctx) {
  struct doctor_event e = {};
  u64 id = bpf_get_current_pid_tgid();
  e.pid = (u32)id;
  e.tgid = id >> 32;
  e.arg1 = GO_ARG1(ctx);
  e.cookie = doctor_cookie;
  e.ktime_ns = bpf_ktime_get_ns();
  ps_submit(&e, sizeof(e));
  return 0;
}
