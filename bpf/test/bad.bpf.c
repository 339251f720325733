/* Deliberately rejected by the verifier (reads a map value without a NULL check), for the load-error test. */
#include "common.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, u64);
} bad_map SEC(".maps");

SEC("uprobe")
int bad_uprobe(struct pt_regs *ctx) {
  u32 key = 0;
  u64 *v = bpf_map_lookup_elem(&bad_map, &key);
  return (int)*v;
}
