#include "rodata.h"

#include <bpf/btf.h>
#include <errno.h>
#include <string.h>

#include <vector>

namespace probescope {

RodataFind FindRodataVar(struct bpf_object* obj, const std::string& name, RodataVar* out) {
  struct btf* btf = bpf_object__btf(obj);
  int sec_id = btf ? btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC) : -ENOENT;
  if (sec_id < 0) return RodataFind::kNoSection;
  const struct btf_type* sec = btf__type_by_id(btf, sec_id);
  const struct btf_var_secinfo* vsi = btf_var_secinfos(sec);
  for (int i = 0; i < btf_vlen(sec); i++, vsi++) {
    const struct btf_type* var = btf__type_by_id(btf, vsi->type);
    if (var != nullptr && btf_is_var(var) && name == btf__name_by_offset(btf, var->name_off)) {
      *out = RodataVar{vsi->offset, vsi->size};
      return RodataFind::kFound;
    }
  }
  return RodataFind::kNoVariable;
}

int WriteRodataVar(struct bpf_object* obj, const RodataVar& var, const void* bytes) {
  struct bpf_map* map = nullptr;
  struct bpf_map* it;
  bpf_object__for_each_map(it, obj) {
    const char* name = bpf_map__name(it);
    size_t len = strlen(name);
    if (bpf_map__is_internal(it) && len >= 7 && strcmp(name + len - 7, ".rodata") == 0) {
      map = it;
      break;
    }
  }
  size_t size = 0;
  const uint8_t* data = map ? static_cast<const uint8_t*>(bpf_map__initial_value(map, &size)) : nullptr;
  if (data == nullptr || var.offset + var.size > size) return -ENOENT;
  // libbpf 1.1 hands out the image read-only: patch a copy and set it back whole.
  std::vector<uint8_t> image(data, data + size);
  memcpy(image.data() + var.offset, bytes, var.size);
  return bpf_map__set_initial_value(map, image.data(), image.size());
}

}  // namespace probescope
