#include "kernel_btf.h"

#include "rodata.h"

#include <bpf/btf.h>
#include <errno.h>
#include <string.h>

#include <mutex>
#include <vector>

namespace probescope {

namespace {

// The byte offset of member `name` in the struct or union `type_id` of `btf`, looking into anonymous struct and union
// members as C does (mm_struct keeps exe_file in one); the member's type id in `*member_type`. -1 when absent.
long long MemberOffset(const struct btf* btf, __u32 type_id, const char* name, __u32* member_type, int depth = 0) {
  const struct btf_type* t = btf__type_by_id(btf, btf__resolve_type(btf, type_id));
  if (t == nullptr || !btf_is_composite(t) || depth > 8) return -1;
  const struct btf_member* m = btf_members(t);
  for (int i = 0; i < btf_vlen(t); i++, m++) {
    const char* mname = btf__name_by_offset(btf, m->name_off);
    __u32 bits = btf_member_bit_offset(t, i);
    if (mname != nullptr && strcmp(mname, name) == 0) {
      if (bits % 8 != 0 || btf_member_bitfield_size(t, i) != 0) return -1;
      *member_type = m->type;
      return bits / 8;
    }
    if (mname == nullptr || mname[0] == '\0') {
      long long inner = MemberOffset(btf, m->type, name, member_type, depth + 1);
      if (inner >= 0) return bits / 8 + inner;
    }
  }
  return -1;
}

// One field: its offset into `*out`, checked to be `size` bytes (a pointer when `pointer`). 0 or -ESRCH.
int Field(const struct btf* btf, const char* strct, const char* field, bool pointer, long long size, uint32_t* out,
          std::string* error) {
  int id = btf__find_by_name_kind(btf, strct, BTF_KIND_STRUCT);
  __u32 member_type = 0;
  long long offset = id < 0 ? -1 : MemberOffset(btf, id, field, &member_type);
  if (offset < 0) {
    *error = std::string("the kernel's BTF has no field ") + field + " in struct " + strct;
    return -ESRCH;
  }
  const struct btf_type* mt = btf__type_by_id(btf, btf__resolve_type(btf, member_type));
  bool ok = mt != nullptr && (pointer ? btf_is_ptr(mt) : btf__resolve_size(btf, member_type) == size);
  if (!ok) {
    *error = std::string("struct ") + strct + "." + field + " in the kernel's BTF is not " +
             (pointer ? "a pointer" : std::to_string(size) + " bytes");
    return -ESRCH;
  }
  *out = static_cast<uint32_t>(offset);
  return 0;
}

std::once_flag exe_once;
int exe_err = 0;
std::string exe_error;
ExeOffsets exe_offsets{};

void ReadExeOffsets() {
  struct btf* btf = btf__load_vmlinux_btf();
  if (btf == nullptr) {
    exe_err = errno ? -errno : -ESRCH;
    exe_error = "the kernel's BTF (/sys/kernel/btf/vmlinux) could not be read: " + std::string(strerror(-exe_err));
    return;
  }
  ExeOffsets o{};
  int err = Field(btf, "task_struct", "mm", true, 8, &o.task_mm, &exe_error);
  if (!err) err = Field(btf, "mm_struct", "exe_file", true, 8, &o.mm_exe_file, &exe_error);
  if (!err) err = Field(btf, "file", "f_inode", true, 8, &o.file_inode, &exe_error);
  if (!err) err = Field(btf, "inode", "i_sb", true, 8, &o.inode_sb, &exe_error);
  if (!err) err = Field(btf, "super_block", "s_dev", false, 4, &o.sb_dev, &exe_error);
  if (!err) err = Field(btf, "inode", "i_ino", false, 8, &o.inode_ino, &exe_error);
  btf__free(btf);
  exe_err = err;
  if (!err) exe_offsets = o;
}

}  // namespace

int KernelExeOffsets(ExeOffsets* out, std::string* error) {
  std::call_once(exe_once, ReadExeOffsets);
  if (exe_err) {
    *error = exe_error;
    return exe_err;
  }
  *out = exe_offsets;
  return 0;
}

int FillKernelConstants(struct bpf_object* obj, std::string* error) {
  RodataVar var{};
  if (FindRodataVar(obj, "ps_exe_offsets", &var) != RodataFind::kFound) return 0;
  if (var.size != sizeof(ExeOffsets)) {
    *error = "ps_exe_offsets is " + std::to_string(var.size) + " bytes, the addon writes " +
             std::to_string(sizeof(ExeOffsets)) + " (an object built with another targets.h)";
    return -EINVAL;
  }
  ExeOffsets offsets{};
  int err = KernelExeOffsets(&offsets, error);
  if (err) return err;
  err = WriteRodataVar(obj, var, &offsets);
  if (err == -ENOENT) *error = "no .rodata image for ps_exe_offsets";
  return err;
}

}  // namespace probescope
