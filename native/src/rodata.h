// An object's `.rodata` variables (`const volatile` globals) before it loads: where one lies, and writing it into the
// initial image libbpf will load.
#pragma once

#include <bpf/libbpf.h>

#include <stdint.h>

#include <string>

namespace probescope {

// Where a variable lies in `.rodata`: bytes from the section's start, and its size.
struct RodataVar {
  uint32_t offset;
  uint32_t size;
};

enum class RodataFind { kFound, kNoVariable, kNoSection };

// `name`'s place in obj's `.rodata`, from the object's BTF: kNoSection when the object has no `.rodata` (or no BTF).
RodataFind FindRodataVar(struct bpf_object* obj, const std::string& name, RodataVar* out);

// Writes `var.size` bytes of `bytes` over the variable in obj's initial `.rodata` image: 0, -ENOENT when there is no
// image holding it, or libbpf's negative errno.
int WriteRodataVar(struct bpf_object* obj, const RodataVar& var, const void* bytes);

}  // namespace probescope
