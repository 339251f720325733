/* Maps for the map-operation and map-sharing tests, plus a program that copies `shared[0]` into the ring, so a
 * second object reusing `shared` proves in the kernel that both objects see one map. */
#include "common.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 64);
  __type(key, u32);
  __type(value, u64);
} shared SEC(".maps");

const volatile u32 maps_key = 0;

SEC("syscall")
int maps_emit(void *ctx) {
  u32 key = maps_key;
  u64 *v = bpf_map_lookup_elem(&shared, &key);
  if (!v)
    return 1;
  u64 out = *v;
  ps_submit(&out, sizeof(out));
  return 0;
}
