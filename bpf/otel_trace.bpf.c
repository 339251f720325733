/* Spans a Go program makes by hand with the OpenTelemetry Go API (go.opentelemetry.io/otel) while no SDK is
 * configured: the API then hands out its global no-op tracer, whose spans record nothing. This probe records them.
 *
 * Where (package go.opentelemetry.io/otel/internal/global, v1.30 and later):
 * - `(*tracer).Start(t, ctx, name, opts ...SpanStartOption) (context.Context, trace.Span)`: every span an
 *   `otel.Tracer(...)` makes while no SDK is set. Entry: RAX=t, RBX/RCX=ctx, RDI/RSI=name, R8/R9/R10=opts. Every RET:
 *   the new context in RAX (itab) / RBX (data), the span in RCX (itab) / RDI (data). When an SDK has been set
 *   (`tracer.delegate` holds a value), Start forwards to it and the span is the SDK's: not recorded here.
 * - The non-recording span's methods, as the `trace.Span` interface calls them: the compiler-made pointer-receiver
 *   wrappers `(*nonRecordingSpan).End / SetAttributes / SetStatus / SetName / AddEvent / RecordError`, RAX = the
 *   span's data word (a pointer to the span value Start boxed), then the arguments.
 *
 * Identity: the span's data word is unique while the span lives (a heap object), so it keys the span's record from
 * Start's RET to End. Ids are made here. The parent is the span of the nearest context on Start's ctx chain, else the
 * goroutine's active span (go_context's ps_go_parent). While the span is open, the context Start returns is
 * registered as its (ps_ctx_spans) and it is the goroutine's active span, so automatic spans made inside it (an HTTP
 * client call with that context) and nested manual spans are its children; End unregisters the context and puts the
 * goroutine's previous span back.
 *
 * What a record keeps is bounded (OT_ATTRS attributes for the span and its events together, OT_EVENTS events, the
 * lengths below); what did not fit is counted. Attribute values of type bool, int64, float64 and string are read;
 * slices are counted as dropped. */
#include "common.h"
#include "go_context.h"
#include "go_types.h"
#include "sampling.h"
#include "strings.h"

#define OT_ATTRS 16
#define OT_KEY 64
#define OT_STR 64
#define OT_EVENTS 4
#define OT_EVENT_NAME 64
#define OT_MSG 64
#define OT_NAME 64
#define OT_DESC 128
/* Start options looked at (WithAttributes and WithSpanKind among them), and event options. */
#define OT_START_OPTS 4
#define OT_EVENT_OPTS 2
/* WithSpanKind closures told apart (one per call site where the compiler inlined WithSpanKind). */
#define OT_KIND_FNS 32

/* go.opentelemetry.io/otel/attribute.Type values read (v1.30 and later). */
#define OT_BOOL 1
#define OT_INT64 2
#define OT_FLOAT64 3
#define OT_STRING 4

/* go.opentelemetry.io/otel/codes.Code. */
#define OT_CODE_ERROR 1

/* internal/abi.Kind of the option types: attributeOption is the only slice among the SpanStartOption and EventOption
 * implementations, spanOptionFunc (which WithSpanKind returns) a func. */
#define OT_KIND_FUNC 19
#define OT_KIND_SLICE 23

/* trace.SpanKindInternal: the kind of a span started without WithSpanKind (as the SDK does). */
#define OT_SPAN_KIND_INTERNAL 1

/* Mirrored by `Target` in src/instrumentations/OtelTrace.ts, checked against this BTF at load. */
struct otel_trace_target {
  u64 tracer_delegate;
  u64 kv_key;
  u64 kv_value;
  u64 kv_size;
  u64 value_vtype;
  u64 value_numeric;
  u64 value_stringly;
  struct ps_go_type_offsets type;
  /* runtime.types minus the address of RecordError's entry probe, and of Start's. */
  s64 types_from_record_error;
  s64 types_from_start;
  u64 types_known;
  /* The code of each WithSpanKind closure minus the address of Start's entry probe. */
  s64 kind_fns[OT_KIND_FNS];
  u64 kind_fn_count;
};

PS_TARGETS(struct otel_trace_target);

/* One attribute of the span (owner 0) or of its event owner-1. */
struct otel_attr {
  /* The value string's full length. */
  u32 str_size;
  /* The key's full length. */
  u16 key_size;
  u8 owner;
  /* attribute.Type; 0 when unread. */
  u8 type;
  u8 key_len;
  u8 str_len;
  u8 _pad[6];
  /* bool, int64 or float64 bits (attribute.Value.numeric); for a string whose bytes could not be read here (a
   * constant on a page not mapped yet, strings.h), their address. */
  u64 num;
  /* The key's bytes when they could not be read here, else 0. */
  u64 key_at;
  char key[OT_KEY];
  char str[OT_STR];
};

struct otel_event {
  u64 time_ns;
  /* What could not be read here (else 0), for user space (go_types.h): RecordError's error's itab (its type), else
   * the name's bytes (name_cold_len of them: a constant on a page not mapped yet); the message (msg_cold_len). */
  u64 name_at;
  u64 msg_at;
  u8 name_len;
  /* 1: from RecordError; name is then the error's dynamic type name and msg its first string field. */
  u8 exception;
  u8 err_tflag;
  u8 err_kind;
  u8 msg_len;
  u8 name_cold_len;
  /* The message's length when its bytes are at msg_at (0: msg_at is its header's address). */
  u8 msg_cold_len;
  u8 _pad[1];
  char name[OT_EVENT_NAME];
  char msg[OT_MSG];
};

/* Mirrored by `Record` in src/instrumentations/OtelTrace.ts, checked against this BTF at load. */
struct otel_trace_record {
  u64 start_ns;
  u64 end_ns;
  u8 trace_id[16];
  u8 span_id[8];
  u8 parent_span_id[8];
  u32 pid;
  u8 flags;
  /* PS_PARENT_LOCAL when there was a parent span, else 0. */
  u8 parent;
  /* trace.SpanKind. */
  u8 kind;
  /* codes.Code, as the SDK keeps it (a lower code never replaces a higher one). */
  u8 status_code;
  u8 name_len;
  u8 desc_len;
  u8 attr_count;
  u8 event_count;
  u32 attrs_dropped;
  u32 events_dropped;
  /* The name's and description's lengths when their bytes could not be read here (then at name_at, desc_at). */
  u8 name_cold_len;
  u8 desc_cold_len;
  u8 _pad[2];
  /* runtime.types, for an event's error type not read here. */
  u64 types;
  u64 name_at;
  u64 desc_at;
  /* The itab of a start option whose type could not be read here, its attributes read under OT_OWNER_UNREAD. */
  u64 option_at;
  char name[OT_NAME];
  char desc[OT_DESC];
  struct otel_attr attrs[OT_ATTRS];
  struct otel_event events[OT_EVENTS];
};
PS_RECORD(otel_trace_record);

#define PS_PARENT_LOCAL 1

/* A span under way. */
struct otel_span {
  struct otel_trace_record rec;
  /* The goroutine's active span before this one, put back at End. */
  struct ps_span_ctx prev;
  /* The context Start returned (its data word), registered as this span's until End. */
  u64 ctx;
  u8 had_prev;
  u8 _pad[7];
};

struct otel_span_key {
  u32 tgid;
  u32 _pad;
  u64 span;
};

/* Between Start's entry and its RET, per goroutine (Start starts no other span on the no-op path). */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 512);
  __type(key, struct ps_g_key);
  __type(value, struct otel_span);
} otel_starting SEC(".maps");

/* Open spans by (process, span data word). LRU: a span never ended ages out. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 2048);
  __type(key, struct otel_span_key);
  __type(value, struct otel_span);
} otel_spans SEC(".maps");

/* One zeroed span, never written: a new span's entry starts as a copy of it (too large to clear on the stack). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct otel_span);
} otel_zero SEC(".maps");

/* What reading a []attribute.KeyValue needs, for bpf_loop's callback (verified once, not once per call site). */
struct attrs_ctx {
  struct otel_trace_record *r;
  const struct otel_trace_target *t;
  u64 ptr;
  u64 len;
  u8 owner;
  /* The record's slots ran out before the slice did (what is left is counted as dropped). */
  u8 full;
};

/* Attribute i of the slice into the record's next slot. */
static long read_attr(u32 i, void *data) {
  struct attrs_ctx *c = data;
  struct otel_trace_record *r = c->r;
  const struct otel_trace_target *t = c->t;
  if ((u64)i >= c->len)
    return 1;
  u32 n = r->attr_count;
  if (n >= OT_ATTRS) {
    r->attrs_dropped += (u32)(c->len - i);
    c->full = 1;
    return 1;
  }
  struct otel_attr *a = &r->attrs[n & (OT_ATTRS - 1)];
  u64 kv = c->ptr + (u64)i * t->kv_size;
  struct go_string key = {};
  bpf_probe_read_user(&key, sizeof(key), (const void *)(kv + t->kv_key));
  a->owner = c->owner;
  a->key_size = key.len > 0xffff ? 0xffff : (u16)key.len;
  a->key_len = ps_read_go_str_or_at(a->key, OT_KEY, key.ptr, key.len, &a->key_at);
  u64 v = kv + t->kv_value;
  u64 vt = ps_read_u64(v + t->value_vtype);
  a->type = vt > 0xff ? 0xff : (u8)vt;
  if (vt == OT_STRING) {
    struct go_string s = {};
    bpf_probe_read_user(&s, sizeof(s), (const void *)(v + t->value_stringly));
    a->str_size = s.len > 0xffffffff ? 0xffffffff : (u32)s.len;
    a->str_len = ps_read_go_str_or_at(a->str, OT_STR, s.ptr, s.len, &a->num);
  } else if (vt == OT_BOOL || vt == OT_INT64 || vt == OT_FLOAT64) {
    a->num = ps_read_u64(v + t->value_numeric);
  }
  r->attr_count = n + 1;
  return 0;
}

/* Append the attributes of a []attribute.KeyValue (ptr, len) to r, owned by `owner`. */
static __always_inline void read_attrs(struct otel_trace_record *r, u64 ptr, u64 len, u8 owner,
                                       const struct otel_trace_target *t) {
  if (ptr == 0)
    return;
  struct attrs_ctx c = {.r = r, .t = t, .ptr = ptr, .len = len, .owner = owner, .full = 0};
  bpf_loop(OT_ATTRS, read_attr, &c, 0);
  if (!c.full && len > OT_ATTRS)
    r->attrs_dropped += (u32)(len - OT_ATTRS);
}

/* An option whose itab or type is on a page not mapped yet (go_types.h): its kind is not known here. */
#define OT_KIND_UNREAD 0xff
/* otel_attr.owner of the attributes of such an option, read as WithAttributes' on a guess (user space decides), and
 * the largest capacity a guessed slice may have. */
#define OT_OWNER_UNREAD 0x80
#define OT_GUESSED_CAP 65536

/* An option interface at `at` (itab, data): its dynamic type's kind, its data word in *data, its itab in *tab. */
static __always_inline u8 option_kind(u64 at, u64 *data, u64 *tab, const struct otel_trace_target *t) {
  struct go_iface o = {};
  if (bpf_probe_read_user(&o, sizeof(o), (const void *)at) != 0 || o.tab == 0)
    return 0;
  *data = o.data;
  *tab = o.tab;
  /* An itab's second word is the dynamic type. */
  struct ps_go_type ty = {};
  if (ps_go_type_read(ps_read_u64(o.tab + 8), &t->type, &ty) != 0)
    return OT_KIND_UNREAD;
  return ty.kind;
}

/* The attributes of WithAttributes options among (ptr, len) options, owned by `owner`. */
static __always_inline void read_option_attrs(struct otel_trace_record *r, u64 ptr, u64 len, u8 owner,
                                              const struct otel_trace_target *t) {
  for (u32 i = 0; i < OT_EVENT_OPTS; i++) {
    if ((u64)i >= len || ptr == 0)
      return;
    u64 data = 0, tab = 0;
    if (option_kind(ptr + (u64)i * sizeof(struct go_iface), &data, &tab, t) == OT_KIND_SLICE && data) {
      struct go_slice s = {};
      if (bpf_probe_read_user(&s, sizeof(s), (const void *)data) == 0)
        read_attrs(r, s.ptr, s.len, owner, t);
    }
  }
}

/* The span's name (Start's or SetName's): kept for user space when it could not be read here. */
static __always_inline void read_name(struct otel_trace_record *r, u64 ptr, u64 len) {
  r->name_at = 0;
  r->name_len = ps_read_go_str_or_at(r->name, OT_NAME, ptr, len, &r->name_at);
  r->name_cold_len = len > OT_NAME ? OT_NAME : len;
}

/* go.opentelemetry.io/otel/internal/global.(*tracer).Start, entry. */
SEC("uprobe/otel_start")
int uprobe_start(struct pt_regs *ctx) {
  struct otel_trace_target *t = ps_target();
  if (!t)
    return 0;
  u64 tracer = GO_ARG1(ctx);
  /* tracer.delegate is an atomic.Value: its first word (the stored value's type) is set once an SDK is. */
  if (tracer == 0 || ps_read_u64(tracer + t->tracer_delegate) != 0)
    return 0;
  u64 g = GO_G(ctx);
  struct ps_g_key gk = ps_g_key_of(g);
  u32 zero = 0;
  struct otel_span *blank = bpf_map_lookup_elem(&otel_zero, &zero);
  if (!blank || bpf_map_update_elem(&otel_starting, &gk, blank, BPF_ANY) != 0)
    return 0;
  struct otel_span *s = bpf_map_lookup_elem(&otel_starting, &gk);
  if (!s)
    return 0;
  struct otel_trace_record *r = &s->rec;
  r->start_ns = bpf_ktime_get_ns();
  r->pid = ps_tgid();
  r->kind = OT_SPAN_KIND_INTERNAL;

  /* The parent: the span of the nearest context on ctx's chain (a manual span's or a server span's), else the
   * goroutine's active span. */
  struct ps_span_ctx parent = {};
  bool has_parent = ps_go_parent(g, GO_ARG3(ctx), &parent) == 0;
  if (has_parent) {
    __builtin_memcpy(r->parent_span_id, parent.span_id, 8);
    r->parent = PS_PARENT_LOCAL;
  }
  struct ps_span_ctx *active = ps_go_ctx_get(g);
  if (active) {
    s->prev = *active;
    s->had_prev = 1;
  }
  struct ps_span_ctx sc = {};
  ps_span_begin(has_parent ? &parent : NULL, &sc);
  __builtin_memcpy(r->trace_id, sc.trace_id, 16);
  __builtin_memcpy(r->span_id, sc.span_id, 8);
  r->flags = sc.flags;

  /* An unsampled span is kept for nesting (its context is what spans inside it inherit) but reads no memory. */
  if (sc.flags & PS_FLAG_SAMPLED) {
    read_name(r, GO_ARG4(ctx), GO_ARG5(ctx));
    u64 opts = GO_ARG6(ctx);
    u64 nopts = GO_ARG7(ctx);
    u64 ip = PT_REGS_IP(ctx);
    u64 types = t->types_known ? ip + (u64)t->types_from_start : 0;
    u32 nfns = t->kind_fn_count > OT_KIND_FNS ? OT_KIND_FNS : (u32)t->kind_fn_count;
    for (u32 i = 0; i < OT_START_OPTS; i++) {
      if ((u64)i >= nopts || opts == 0)
        break;
      u64 data = 0, tab = 0;
      u8 kind = option_kind(opts + (u64)i * sizeof(struct go_iface), &data, &tab, t);
      /* trace.WithAttributes: an attributeOption ([]attribute.KeyValue), boxed: its slice header's address. */
      u64 attrs_at = kind == OT_KIND_SLICE ? data : 0;
      u8 owner = 0;
      if ((kind == OT_KIND_FUNC || kind == OT_KIND_UNREAD) && data) {
        /* trace.WithSpanKind: a closure {code, kind}; its code tells it from the other func options. Tried for an
         * option of a type not read here too: only a closure's first word is one of these code addresses (an
         * attribute option's is a heap pointer). */
        u64 code = ps_read_u64(data);
        bool span_kind = false;
        for (u32 j = 0; j < OT_KIND_FNS; j++) {
          if (j >= nfns)
            break;
          if ((s64)(code - ip) == t->kind_fns[j]) {
            r->kind = (u8)ps_read_u64(data + 8);
            span_kind = true;
            break;
          }
        }
        /* Any other option of a type not read here may be WithAttributes: its attributes are read as if it were,
         * under OT_OWNER_UNREAD, and the option's itab kept; user space keeps them once it has read that type (a
         * slice) from the process, which maps its page for the next span. One such option type per span. */
        if (!span_kind && kind == OT_KIND_UNREAD && types && (r->option_at == 0 || r->option_at == tab)) {
          r->option_at = tab;
          r->types = types;
          attrs_at = data;
          owner = OT_OWNER_UNREAD;
        }
      }
      struct go_slice kvs = {};
      /* A slice header read on a guess must look like one. */
      if (attrs_at && bpf_probe_read_user(&kvs, sizeof(kvs), (const void *)attrs_at) == 0 &&
          (owner == 0 || (kvs.len <= kvs.cap && kvs.cap <= OT_GUESSED_CAP)))
        read_attrs(r, kvs.ptr, kvs.len, owner, t);
    }
  }
  return 0;
}

/* Start's RETs: the span value and the context it returns; the span becomes the goroutine's active span. */
SEC("uprobe/otel_start_ret")
int uprobe_start_ret(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  struct ps_g_key gk = ps_g_key_of(g);
  struct otel_span *s = bpf_map_lookup_elem(&otel_starting, &gk);
  if (!s)
    return 0;
  u64 span = GO_ARG4(ctx);
  if (span != 0) {
    s->ctx = GO_ARG2(ctx);
    struct otel_span_key k = {.tgid = gk.tgid, ._pad = 0, .span = span};
    bpf_map_update_elem(&otel_spans, &k, s, BPF_ANY);
    struct ps_span_ctx sc = {};
    __builtin_memcpy(sc.trace_id, s->rec.trace_id, 16);
    __builtin_memcpy(sc.span_id, s->rec.span_id, 8);
    sc.flags = s->rec.flags;
    /* Work done with the returned context (an HTTP client call, a nested span) finds this span through it, and work
     * on this goroutine that is given no context through the goroutine's entry. */
    ps_ctx_span_set(s->ctx, &sc);
    ps_go_ctx_set(g, &sc);
  }
  bpf_map_delete_elem(&otel_starting, &gk);
  return 0;
}

/* The open span whose data word is in RAX, or NULL; *k is set to its key. */
static __always_inline struct otel_span *open_span(struct pt_regs *ctx, struct otel_span_key *k) {
  k->tgid = ps_tgid();
  k->_pad = 0;
  k->span = GO_ARG1(ctx);
  if (k->span == 0)
    return NULL;
  return bpf_map_lookup_elem(&otel_spans, k);
}

/* (*nonRecordingSpan).End: RAX=span. The record out, the goroutine's previous span back if this one is active. */
SEC("uprobe/otel_end")
int uprobe_end(struct pt_regs *ctx) {
  struct otel_span_key k;
  struct otel_span *s = open_span(ctx, &k);
  if (!s)
    return 0;
  struct otel_trace_record *r = &s->rec;
  r->end_ns = bpf_ktime_get_ns();
  u64 g = GO_G(ctx);
  struct ps_span_ctx *active = ps_go_ctx_get(g);
  u64 mine = 0, theirs = 0;
  __builtin_memcpy(&mine, r->span_id, 8);
  if (active)
    __builtin_memcpy(&theirs, active->span_id, 8);
  if (active && mine == theirs) {
    if (s->had_prev)
      ps_go_ctx_set(g, &s->prev);
    else
      ps_go_ctx_clear(g);
  }
  ps_ctx_span_clear(s->ctx);
  if (r->flags & PS_FLAG_SAMPLED)
    ps_submit(r, sizeof(*r));
  bpf_map_delete_elem(&otel_spans, &k);
  return 0;
}

/* (*nonRecordingSpan).SetAttributes: RAX=span, RBX/RCX/RDI=kv. */
SEC("uprobe/otel_set_attributes")
int uprobe_set_attributes(struct pt_regs *ctx) {
  struct otel_span_key k;
  struct otel_span *s = open_span(ctx, &k);
  if (!s || !(s->rec.flags & PS_FLAG_SAMPLED))
    return 0;
  struct otel_trace_target *t = ps_target();
  if (!t)
    return 0;
  read_attrs(&s->rec, GO_ARG2(ctx), GO_ARG3(ctx), 0, t);
  return 0;
}

/* (*nonRecordingSpan).SetStatus: RAX=span, RBX=code, RCX/RDI=description. */
SEC("uprobe/otel_set_status")
int uprobe_set_status(struct pt_regs *ctx) {
  struct otel_span_key k;
  struct otel_span *s = open_span(ctx, &k);
  if (!s || !(s->rec.flags & PS_FLAG_SAMPLED))
    return 0;
  u32 code = (u32)GO_ARG2(ctx);
  struct otel_trace_record *r = &s->rec;
  /* As the SDK: Unset < Error < Ok, and a lower code never replaces a higher one; only Error keeps a description. */
  if (code > 2 || code < r->status_code)
    return 0;
  r->status_code = (u8)code;
  r->desc_len = 0;
  r->desc_at = 0;
  if (code == OT_CODE_ERROR) {
    u64 len = GO_ARG4(ctx);
    r->desc_len = ps_read_go_str_or_at(r->desc, OT_DESC, GO_ARG3(ctx), len, &r->desc_at);
    r->desc_cold_len = len > OT_DESC ? OT_DESC : len;
  }
  return 0;
}

/* (*nonRecordingSpan).SetName: RAX=span, RBX/RCX=name. */
SEC("uprobe/otel_set_name")
int uprobe_set_name(struct pt_regs *ctx) {
  struct otel_span_key k;
  struct otel_span *s = open_span(ctx, &k);
  if (!s || !(s->rec.flags & PS_FLAG_SAMPLED))
    return 0;
  read_name(&s->rec, GO_ARG2(ctx), GO_ARG3(ctx));
  return 0;
}

/* The span's next event slot, or NULL (counted as dropped) when all are taken. */
static __always_inline struct otel_event *next_event(struct otel_trace_record *r) {
  u32 n = r->event_count;
  if (n >= OT_EVENTS) {
    r->events_dropped++;
    return NULL;
  }
  struct otel_event *e = &r->events[n & (OT_EVENTS - 1)];
  e->time_ns = bpf_ktime_get_ns();
  r->event_count = n + 1;
  return e;
}

/* (*nonRecordingSpan).AddEvent: RAX=span, RBX/RCX=name, RDI/RSI/R8=opts. */
SEC("uprobe/otel_add_event")
int uprobe_add_event(struct pt_regs *ctx) {
  struct otel_span_key k;
  struct otel_span *s = open_span(ctx, &k);
  if (!s || !(s->rec.flags & PS_FLAG_SAMPLED))
    return 0;
  struct otel_trace_target *t = ps_target();
  if (!t)
    return 0;
  struct otel_trace_record *r = &s->rec;
  u8 owner = r->event_count + 1;
  struct otel_event *e = next_event(r);
  if (!e)
    return 0;
  u64 len = GO_ARG3(ctx);
  e->name_len = ps_read_go_str_or_at(e->name, OT_EVENT_NAME, GO_ARG2(ctx), len, &e->name_at);
  e->name_cold_len = len > OT_EVENT_NAME ? OT_EVENT_NAME : len;
  read_option_attrs(r, GO_ARG4(ctx), GO_ARG5(ctx), owner, t);
  return 0;
}

/* (*nonRecordingSpan).RecordError: RAX=span, RBX/RCX=err, RDI/RSI/R8=opts. An "exception" event, as the SDK makes. */
SEC("uprobe/otel_record_error")
int uprobe_record_error(struct pt_regs *ctx) {
  struct otel_span_key k;
  struct otel_span *s = open_span(ctx, &k);
  u64 err_tab = GO_ARG2(ctx);
  u64 err_data = GO_ARG3(ctx);
  /* The SDK ignores a nil error. */
  if (!s || err_tab == 0 || !(s->rec.flags & PS_FLAG_SAMPLED))
    return 0;
  struct otel_trace_target *t = ps_target();
  if (!t)
    return 0;
  struct otel_trace_record *r = &s->rec;
  u8 owner = r->event_count + 1;
  struct otel_event *e = next_event(r);
  if (!e)
    return 0;
  e->exception = 1;
  struct ps_go_type ty = {};
  r->types = t->types_known ? PT_REGS_IP(ctx) + (u64)t->types_from_record_error : 0;
  e->name_len = ps_go_itab_describe(e->name, OT_EVENT_NAME, err_tab, r->types, &t->type, &ty, &e->name_at);
  e->err_kind = ty.kind;
  e->err_tflag = ty.tflag;
  /* The message of the common error types (errors.New's, fmt.Errorf's) is their struct's first field, a string;
   * user space keeps it only for those types (read for a type not read here too). */
  if ((ty.kind == PS_GO_KIND_POINTER || e->name_at) && err_data)
    e->msg_len = ps_read_go_str_at_or_at(e->msg, OT_MSG, err_data, &e->msg_at, &e->msg_cold_len);
  read_option_attrs(r, GO_ARG4(ctx), GO_ARG5(ctx), owner, t);
  return 0;
}
