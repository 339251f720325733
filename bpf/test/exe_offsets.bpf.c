/* The lookup by executable file (targets.h) reads through offsets the addon writes from the kernel's BTF: checked
 * here against what CO-RE computes for the same fields and what BPF_CORE_READ reads through them, for one process
 * (test_tgid) at its next syscall. test/kernel/ExeOffsets.kernel.test.ts. */
#include "common.h"

PS_TARGETS(u64);

const volatile u32 test_tgid = 0;

struct exe_seen {
  struct ps_exe_offsets core;
  struct ps_exe_offsets written;
  u64 core_dev;
  u64 core_ino;
  /* ps_target()'s value (what the test put in ps_target_files under this process's file), 0 when it found none. */
  u64 found;
  u64 hits;
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct exe_seen);
} seen SEC(".maps");

SEC("raw_tp/sys_enter")
int exe_offsets(void *ctx) {
  if ((bpf_get_current_pid_tgid() >> 32) != test_tgid)
    return 0;
  u32 zero = 0;
  struct exe_seen *s = bpf_map_lookup_elem(&seen, &zero);
  if (!s)
    return 0;
  s->core.task_mm = bpf_core_field_offset(struct task_struct, mm);
  s->core.mm_exe_file = bpf_core_field_offset(struct mm_struct, exe_file);
  s->core.file_inode = bpf_core_field_offset(struct file, f_inode);
  s->core.inode_sb = bpf_core_field_offset(struct inode, i_sb);
  s->core.sb_dev = bpf_core_field_offset(struct super_block, s_dev);
  s->core.inode_ino = bpf_core_field_offset(struct inode, i_ino);
  s->written.task_mm = ps_exe_offsets.task_mm;
  s->written.mm_exe_file = ps_exe_offsets.mm_exe_file;
  s->written.file_inode = ps_exe_offsets.file_inode;
  s->written.inode_sb = ps_exe_offsets.inode_sb;
  s->written.sb_dev = ps_exe_offsets.sb_dev;
  s->written.inode_ino = ps_exe_offsets.inode_ino;
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  s->core_dev = BPF_CORE_READ(task, mm, exe_file, f_inode, i_sb, s_dev);
  s->core_ino = BPF_CORE_READ(task, mm, exe_file, f_inode, i_ino);
  u64 *v = ps_target();
  s->found = v ? *v : 0;
  s->hits++;
  return 0;
}
