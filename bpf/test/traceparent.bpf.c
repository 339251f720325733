/* ps_traceparent_parse (go_context.h) on texts the test writes: the parse's verdict and what it decoded, for one
 * process (test_tgid) at its next syscall. test/kernel/Traceparent.kernel.test.ts. */
#include "common.h"
#include "go_context.h"

const volatile u32 test_tgid = 0;

struct parse_case {
  u8 text[56];
  s32 ret;
  u32 done;
  struct ps_span_ctx out;
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 16);
  __type(key, u32);
  __type(value, struct parse_case);
} cases SEC(".maps");

static long parse_one(u64 index, void *ctx) {
  u32 i = (u32)index;
  struct parse_case *c = bpf_map_lookup_elem(&cases, &i);
  if (!c || c->done)
    return 0;
  c->ret = ps_traceparent_parse(c->text, &c->out);
  c->done = 1;
  return 0;
}

SEC("raw_tp/sys_enter")
int traceparent_parse(void *ctx) {
  if ((bpf_get_current_pid_tgid() >> 32) != test_tgid)
    return 0;
  bpf_loop(16, parse_one, NULL, 0);
  return 0;
}
