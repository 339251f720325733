/* go/panic: Go panics as log records, and the net/http server span of a request whose handler panicked.
 *
 * runtime.gopanic(e any), entry (RAX = e's type, RBX = e's data): reads what the panic value is — its type's name
 * and kind, its first 32 bytes, and the string in it (a string value, or the first field of an error such as
 * *errors.errorString) — and the span active on the goroutine (go_context's `go_spans`). Submits a PANIC record and
 * keeps the same facts per goroutine in `go_panic_pending` until the panic is recovered.
 *
 * runtime.recovery(gp *g), entry (RAX = gp): the runtime calls it, on the system stack, once a deferred call has
 * recovered the panic of goroutine gp. Submits a RECOVERED record from the pending facts and forgets them.
 *
 * runtime.fatalpanic, entry: gopanic calls it when no deferred call recovered the panic; the process prints the panic
 * and exits. Submits a FATAL record from the pending facts (the ring outlives the process) and forgets them.
 *
 * net/http's recovering closures, entry: the one (*conn).serve defers (HTTP/1, run at every connection's end) and the
 * one the HTTP/2 server's runHandler defers (run at every HTTP/2 request's end). Only when the goroutine still has a
 * request in flight (nethttp_server's `nethttp_server_inflight`, reused) has a handler unwound past
 * serverHandler.ServeHTTP — whose RET probes therefore never ran. Submits a SERVER_SPAN record (the request's record,
 * ended now, plus the pending panic), removes the in-flight entry and clears the goroutine's active span, as the RET
 * probe would have.
 *
 * The value's type name is read through `runtime.types`, found at the runtime address of gopanic's entry probe plus
 * the distance user space measured in the binary (`types_from_gopanic`): position independent, no data symbol
 * needed at run time. */
#include "common.h"
#include "go_context.h"
#include "nethttp.h"
#include "nethttp_server.h"
#include "go_types.h"

/* Per target: how to read type names and the request's route. Mirrored by `Target` in
 * src/instrumentations/GoPanic.ts, checked against this BTF at load. */
struct go_panic_target {
  /* runtime.types minus the address of gopanic's entry probe; meaningful only when types_known. */
  s64 types_from_gopanic;
  u64 types_known;
  struct ps_go_type_offsets type;
  /* net/http.Request.Pattern; 0 when unknown (Method sits at 0, Pattern never does). */
  u64 request_pattern;
};

PS_TARGETS(struct go_panic_target);

#define GO_PANIC_TYPE_CAP 64
#define GO_PANIC_MESSAGE_CAP 128

/* One panic as gopanic saw it. */
struct go_panic_info {
  u64 panic_ns;
  /* The span active on the goroutine when it panicked (has_span). */
  u8 trace_id[16];
  u8 span_id[8];
  u8 trace_flags;
  u8 has_span;
  /* abi.Kind of the value's type, its TFlag, and whether the value was nil (panic(nil): no type at all). */
  u8 type_kind;
  u8 type_tflag;
  u8 type_len;
  u8 nil_value;
  u16 message_len;
  /* What could not be read here (else 0), for user space (go_types.h): the type (with runtime.types), the value, the
   * message's bytes (a constant: panic("...")). */
  u64 types;
  u64 type_at;
  u64 value_at;
  u64 message_at;
  /* The value's first 32 bytes (for a pointer type: those it points at). */
  u8 value[32];
  char type_name[GO_PANIC_TYPE_CAP];
  /* The string in the first two words of `value`: the value itself for a string kind, else a first field. */
  char message[GO_PANIC_MESSAGE_CAP];
};

#define GO_PANIC_KIND_PANIC 1
#define GO_PANIC_KIND_RECOVERED 2
#define GO_PANIC_KIND_SERVER_SPAN 3
#define GO_PANIC_KIND_FATAL 4

/* Mirrored by `Record` in src/instrumentations/GoPanic.ts, checked against this BTF at load. */
struct go_panic_record {
  u64 time_ns;
  u32 pid;
  u8 kind;
  /* SERVER_SPAN: `panic` holds the panic that unwound the handler (else it exited by runtime.Goexit). */
  u8 has_panic;
  u8 _pad[2];
  struct go_panic_info panic;
  /* SERVER_SPAN: a struct nethttp_server_record, ended by the recovery. Kept as bytes so user space decodes it with
   * the server probe's own layout. */
  u8 server[sizeof(struct nethttp_server_record)];
};
PS_RECORD(go_panic_record);

_Static_assert(__builtin_offsetof(struct go_panic_record, server) % 8 == 0, "server record is 8-byte aligned");

/* Panics not recovered yet, by goroutine. LRU: a goroutine whose panic kills the process leaves its entry behind. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 1024);
  __type(key, struct ps_g_key);
  __type(value, struct go_panic_info);
} go_panic_pending SEC(".maps");

/* go_panic_info is too large to build on the 512-byte stack next to the rest. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct go_panic_info);
} go_panic_scratch SEC(".maps");

/* Submit a record of `kind` carrying `info` (may be NULL), zeroed elsewhere. */
static __always_inline struct go_panic_record *go_panic_reserve(u8 kind, const struct go_panic_info *info) {
  struct go_panic_record *r = ps_reserve(struct go_panic_record);
  if (!r)
    return NULL;
  __builtin_memset(r, 0, sizeof(*r));
  r->time_ns = bpf_ktime_get_ns();
  r->pid = ps_tgid();
  r->kind = kind;
  if (info) {
    r->has_panic = 1;
    __builtin_memcpy(&r->panic, info, sizeof(*info));
  }
  return r;
}

SEC("uprobe/runtime_gopanic")
int uprobe_gopanic(struct pt_regs *ctx) {
  struct go_panic_target *t = ps_target();
  if (!t)
    return 0;
  u32 zero = 0;
  struct go_panic_info *p = bpf_map_lookup_elem(&go_panic_scratch, &zero);
  if (!p)
    return 0;
  __builtin_memset(p, 0, sizeof(*p));
  p->panic_ns = bpf_ktime_get_ns();

  u64 g = GO_G(ctx);
  struct ps_span_ctx *active = ps_go_ctx_get(g);
  if (active) {
    __builtin_memcpy(p->trace_id, active->trace_id, 16);
    __builtin_memcpy(p->span_id, active->span_id, 8);
    p->trace_flags = active->flags;
    p->has_span = 1;
  }

  u64 typ = GO_ARG1(ctx);
  u64 data = GO_ARG2(ctx);
  struct ps_go_type ty = {};
  if (typ == 0) {
    p->nil_value = 1;
  } else {
    p->types = t->types_known ? PT_REGS_IP(ctx) + (u64)t->types_from_gopanic : 0;
    p->type_len = ps_go_type_describe(p->type_name, GO_PANIC_TYPE_CAP, typ, p->types, &t->type, &ty, &p->type_at);
    p->type_kind = ty.kind;
    p->type_tflag = ty.tflag;
  }
  /* A small value near the end of a mapping cannot be read whole: fall back to fewer bytes. None read (a constant
   * not mapped yet): user space reads it. */
  if (data && bpf_probe_read_user(p->value, 32, (const void *)data) != 0 &&
      bpf_probe_read_user(p->value, 16, (const void *)data) != 0 &&
      bpf_probe_read_user(p->value, 8, (const void *)data) != 0)
    p->value_at = data;
  /* Read for a type not read here too: user space keeps it only for a kind that has it. */
  if (ty.kind == PS_GO_KIND_STRING || ty.kind == PS_GO_KIND_POINTER || p->type_at) {
    struct go_string s = {};
    __builtin_memcpy(&s, p->value, sizeof(s));
    /* A first field that is no string header reads as garbage or nothing; user space uses it only for types
     * known to keep their message there. */
    if (s.len <= (1 << 20))
      p->message_len = ps_read_go_str_or_at(p->message, GO_PANIC_MESSAGE_CAP, s.ptr, s.len, &p->message_at);
  }

  struct go_panic_record *r = go_panic_reserve(GO_PANIC_KIND_PANIC, p);
  if (r)
    ps_commit(r);
  struct ps_g_key key = ps_g_key_of(g);
  bpf_map_update_elem(&go_panic_pending, &key, p, BPF_ANY);
  return 0;
}

/* Submit a record of `kind` from goroutine `g`'s pending panic, and forget it: the panic has ended one way or the
 * other. */
static __always_inline int go_panic_settle(u64 g, u8 kind) {
  struct ps_g_key key = ps_g_key_of(g);
  struct go_panic_info *p = bpf_map_lookup_elem(&go_panic_pending, &key);
  if (!p)
    return 0;
  struct go_panic_record *r = go_panic_reserve(kind, p);
  if (r)
    ps_commit(r);
  bpf_map_delete_elem(&go_panic_pending, &key);
  return 0;
}

SEC("uprobe/runtime_recovery")
int uprobe_recovery(struct pt_regs *ctx) {
  /* recovery runs on g0 (mcall): the recovered goroutine is the argument, not R14. */
  return go_panic_settle(GO_ARG1(ctx), GO_PANIC_KIND_RECOVERED);
}

SEC("uprobe/runtime_fatalpanic")
int uprobe_fatalpanic(struct pt_regs *ctx) {
  /* Called by gopanic on the panicking goroutine, before it switches to the system stack. */
  return go_panic_settle(GO_G(ctx), GO_PANIC_KIND_FATAL);
}

SEC("uprobe/net_http_recover")
int uprobe_http_recover(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  struct ps_g_key key = ps_g_key_of(g);
  struct server_inflight *inf = bpf_map_lookup_elem(&nethttp_server_inflight, &key);
  /* The usual case: the connection or HTTP/2 request ends with its request already done. */
  if (!inf)
    return 0;
  if (inf->rec.head.flags & PS_FLAG_SAMPLED) {
    struct go_panic_info *p = bpf_map_lookup_elem(&go_panic_pending, &key);
    struct go_panic_record *r = go_panic_reserve(GO_PANIC_KIND_SERVER_SPAN, p);
    if (r) {
      struct nethttp_server_record *s = (struct nethttp_server_record *)r->server;
      __builtin_memcpy(s, &inf->rec, sizeof(*s));
      s->head.end_ns = r->time_ns;
      /* ServeMux set Request.Pattern while routing, before the handler ran. */
      struct go_panic_target *t = ps_target();
      if (t && t->request_pattern)
        s->pattern_len = ps_read_go_str_at(s->pattern, sizeof(s->pattern), inf->req + t->request_pattern);
      ps_commit(r);
    }
  }
  /* The handler's request context was registered as the span's (go_context.h): it ends here, not at the RET the
   * panic unwound past. */
  if (inf->ctx)
    ps_ctx_span_clear(inf->ctx);
  bpf_map_delete_elem(&nethttp_server_inflight, &key);
  ps_go_ctx_clear(g);
  return 0;
}
