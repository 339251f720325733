/* The out-of-tree example's probe: one span per call of `func (c *Cache) Get(key string) (string, bool)` in the
 * example service, the child of whatever span is active on the calling goroutine (the net/http server probe's, for
 * a request's handler).
 *
 * Built with `probescope bpf build bpf/cache_get.bpf.c`, which puts the package's headers on the include path:
 * common.h (vmlinux.h, libbpf's helpers, GO_ARGn/GO_G, ps_read_go_str, the shared `events` ring and ps_submit),
 * go_context.h (the goroutine -> span map the go_context probe owns, ps_go_ctx_get, id generation) and sampling.h
 * (the sampler the framework sets from OTEL_TRACES_SAMPLER, ps_should_sample).
 *
 * Entry (past the prologue): RAX = c, RBX = key.ptr, RCX = key.len. Each RET: RAX/RBX = the value, RCX = found. */
#include "common.h"
#include "go_context.h"
#include "sampling.h"

#define KEY_CAP 32

/* Mirrored field by field by `CacheGetRecord` in src/CacheProbe.ts, which the loader checks against this struct in
 * the object's BTF (size, each field's offset and width). */
struct cache_get_record {
  u64 start_ns;
  u64 end_ns;
  u8 trace_id[16];
  u8 span_id[8];
  u8 parent_span_id[8];
  u32 pid;
  u8 flags;
  u8 has_parent;
  u8 found;
  u8 key_len;
  char key[KEY_CAP];
};
/* Puts the struct in the object's BTF even though no map or signature names it (see events.h). */
PS_RECORD(cache_get_record);

/* Calls in flight, by goroutine: Get's RET runs on the goroutine its entry ran on. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 10240);
  __type(key, struct ps_g_key);
  __type(value, struct cache_get_record);
} cache_get_inflight SEC(".maps");

SEC("uprobe")
int uprobe_cache_get(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  struct cache_get_record r = {};
  r.start_ns = bpf_ktime_get_ns();
  r.pid = ps_tgid();
  /* Copied out of the map at once: the entry may change under us once other programs run. */
  struct ps_span_ctx *active = ps_go_ctx_get(g);
  struct ps_span_ctx parent = {};
  if (active) {
    parent = *active;
    __builtin_memcpy(r.trace_id, parent.trace_id, 16);
    __builtin_memcpy(r.parent_span_id, parent.span_id, 8);
    r.has_parent = 1;
  } else {
    ps_gen_trace_id(r.trace_id);
  }
  ps_gen_span_id(r.span_id);
  if (!ps_should_sample(r.trace_id, active ? &parent : NULL))
    return 0;
  r.flags = PS_FLAG_SAMPLED;
  r.key_len = ps_read_go_str(r.key, KEY_CAP, GO_ARG2(ctx), GO_ARG3(ctx));
  struct ps_g_key k = ps_g_key_of(g);
  bpf_map_update_elem(&cache_get_inflight, &k, &r, BPF_ANY);
  return 0;
}

SEC("uprobe")
int uprobe_cache_get_ret(struct pt_regs *ctx) {
  struct ps_g_key k = ps_g_key_of(GO_G(ctx));
  struct cache_get_record *r = bpf_map_lookup_elem(&cache_get_inflight, &k);
  if (!r)
    return 0;
  r->end_ns = bpf_ktime_get_ns();
  /* The second result, a bool, comes back in RCX. */
  r->found = GO_ARG3(ctx) & 1;
  ps_submit(r, sizeof(*r));
  bpf_map_delete_elem(&cache_get_inflight, &k);
  return 0;
}
