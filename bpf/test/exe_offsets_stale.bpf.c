/* An object built against another targets.h: its `ps_exe_offsets` is not the size the addon writes, so the addon
 * refuses to load it rather than fill it wrongly. test/kernel/ExeOffsets.kernel.test.ts. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

const volatile u32 ps_exe_offsets[3] = {};

SEC("raw_tp/sys_enter")
int exe_offsets_stale(void *ctx) {
  return ps_exe_offsets[0] == 1;
}

char LICENSE[] SEC("license") = "GPL";
