// createMaps(file, names): some of an object's maps created from its definitions, before (and without) loading it.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "common.h"

namespace probescope {

// createMaps(file, names): { [name]: fd }. Each map as the object file defines it (type, key and value sizes, entries,
// flags), without BTF. An object that shares maps is otherwise verified before anyone has their fds: its dependents
// would wait for its load. The caller owns the fds (an object reusing one dups it). On any failure nothing is left
// open.
Napi::Value CreateMaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) {
    throw Napi::TypeError::New(env, "expected (file: string, maps: string[])");
  }
  std::string file = info[0].As<Napi::String>().Utf8Value();
  Napi::Array names = info[1].As<Napi::Array>();
  LogReset();
  struct bpf_object* obj = bpf_object__open_file(file.c_str(), nullptr);
  if (obj == nullptr) {
    int err = errno;
    throw MakeError(env, "createMaps", err ? err : EINVAL, file);
  }
  std::vector<std::pair<std::string, int>> created;
  auto fail = [&](int err, const std::string& detail) {
    for (auto& c : created) close(c.second);
    bpf_object__close(obj);
    return MakeError(env, "createMaps", err, detail);
  };
  for (uint32_t i = 0; i < names.Length(); i++) {
    Napi::Value v = names.Get(i);
    if (!v.IsString()) throw fail(EINVAL, "map names must be strings, got " + v.ToString().Utf8Value());
    std::string name = v.As<Napi::String>().Utf8Value();
    struct bpf_map* map = bpf_object__find_map_by_name(obj, name.c_str());
    if (map == nullptr || bpf_map__is_internal(map)) throw fail(ENOENT, "no map " + name + " in " + file);
    enum bpf_map_type type = bpf_map__type(map);
    // A map of maps needs its inner map's fd, and its BTF-described values (locks, timers) need the object's BTF:
    // neither is made here.
    if (type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_HASH_OF_MAPS) {
      throw fail(EINVAL, "map " + name + " is a map of maps: not created ahead of its object");
    }
    LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = bpf_map__map_flags(map),
                .map_extra = bpf_map__map_extra(map), .numa_node = bpf_map__numa_node(map));
    int fd = bpf_map_create(type, name.c_str(), bpf_map__key_size(map), bpf_map__value_size(map),
                            bpf_map__max_entries(map), &opts);
    if (fd < 0) throw fail(-fd, "map " + name + " of " + file);
    created.emplace_back(name, fd);
  }
  bpf_object__close(obj);
  Napi::Object out = Napi::Object::New(env);
  for (auto& c : created) out.Set(c.first, c.second);
  return out;
}

}  // namespace probescope
