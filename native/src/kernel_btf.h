// Facts read once per process from the running kernel's BTF, for objects that would otherwise need CO-RE.
#pragma once

#include <bpf/libbpf.h>

#include <stdint.h>

#include <string>

namespace probescope {

// Byte offsets of the fields the lookup by executable file reads (bpf/include/probescope/targets.h, same order).
struct ExeOffsets {
  uint32_t task_mm;
  uint32_t mm_exe_file;
  uint32_t file_inode;
  uint32_t inode_sb;
  uint32_t sb_dev;
  uint32_t inode_ino;
};

// This kernel's offsets, from /sys/kernel/btf/vmlinux parsed on the first call (any thread; callers meanwhile wait
// for it) and freed after: 0, or a negative errno with `error` saying what is missing.
int KernelExeOffsets(ExeOffsets* out, std::string* error);

// Before `obj` loads: when it declares the `.rodata` constant `ps_exe_offsets` (PS_TARGETS), writes this kernel's
// offsets into it. 0, or a negative errno with `error` set (the load must not go on: the lookup would read garbage).
int FillKernelConstants(struct bpf_object* obj, std::string* error);

}  // namespace probescope
