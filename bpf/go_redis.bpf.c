/* go-redis v9 (github.com/redis/go-redis/v9): one CLIENT span per command and one per pipeline.
 *
 * Where: `(*baseClient).process(c, ctx context.Context, cmd Cmder) error` runs once per command a program issues
 * (every client type ends there: Client, Conn, the nodes of a Ring or a ClusterClient), on the caller's goroutine,
 * around all of the command's attempts (retries are inside it, as the caller sees one operation).
 * `(*baseClient).processPipeline` and `processTxPipeline(c, ctx, cmds []Cmder) error` run once per pipeline
 * (MULTI/EXEC for the latter) and return the first command's error.
 *
 * Registers (Go ABI): entry RAX=c, RBX/RCX=ctx, then the command interface in RDI (itab) / RSI (data), or the slice
 * of commands in RDI (ptr) / RSI (len) / R8 (cap). Every RET has the returned error in RAX (itab) / RBX (data).
 *
 * A command is a pointer to a concrete *XxxCmd whose first field is the embedded baseCmd, whose `args []interface{}`
 * holds the command name (args[0]) and its arguments. The server address and database index come from
 * baseClient.opt (*Options). The error's dynamic type name is read through runtime.types (go_types.h) and, when that
 * type is a string kind (proto.RedisError: the server's reply "WRONGTYPE ..."), its text too.
 *
 * The parent of an operation is the nearest span registered on its ctx's chain (go_context.h ps_go_parent: a server
 * span whose r.Context() the command runs under, on whatever goroutine), else the goroutine's active span. While a
 * command runs, its span is the goroutine's active span (go_context's go_spans), and a command go-redis issues
 * inside it (HELLO on a new connection) is its child: when this goroutine already has a go-redis operation under way,
 * that operation is the parent whatever the context says (its ctx is the outer command's or derived from it, so the
 * chain would name the server span instead). The previous span is put back at RET. */
#include "common.h"
#include "go_context.h"
#include "go_types.h"
#include "sampling.h"
#include "strings.h"

/* db.query.text is opt-in (arguments may hold keys and values): only then are the arguments past the name read. */
const volatile u64 go_redis_query_text = 0;

#define GO_REDIS_ARGS 8
#define GO_REDIS_ARG_CAP 32

/* Op kinds of go_redis_record.op_kind. */
#define GO_REDIS_COMMAND 1
#define GO_REDIS_PIPELINE 2
#define GO_REDIS_TX_PIPELINE 3

/* Mirrored by `Target` in src/instrumentations/GoRedis.ts, checked against this BTF at load. */
struct go_redis_target {
  /* runtime.types minus the address of each entry probe (the instruction pointer the program sees there). */
  s64 types_from_process;
  s64 types_from_pipeline;
  s64 types_from_tx_pipeline;
  u64 types_known;
  struct ps_go_type_offsets type;
  u64 client_opt;
  u64 opt_addr;
  u64 opt_db;
  u64 cmd_args;
};

PS_TARGETS(struct go_redis_target);

/* One argument of the command: its kind (internal/abi.Kind), its first bytes (a string's or []byte's bytes, a
 * number's 8 bytes) and its full size. */
struct go_redis_arg {
  u32 size;
  u8 kind;
  u8 len;
  u8 _pad[2];
  /* What could not be read here (a constant on a page not mapped yet, strings.h): a string's bytes, a number's. */
  u64 at;
  u8 data[GO_REDIS_ARG_CAP];
};

/* Mirrored by `Record` in src/instrumentations/GoRedis.ts, checked against this BTF at load. */
struct go_redis_record {
  u64 start_ns;
  u64 end_ns;
  u8 trace_id[16];
  u8 span_id[8];
  u8 parent_span_id[8];
  u32 pid;
  u8 flags;
  /* PS_PARENT_LOCAL when the operation has a parent (its context's or the goroutine's span), else 0. */
  u8 parent;
  u8 op_kind;
  u8 has_error;
  /* Commands in a pipeline; 0 for one command. */
  u32 batch_size;
  /* Arguments of a command, its name included (only the first GO_REDIS_ARGS are in `args`). */
  u32 arg_count;
  s64 db;
  u8 op_len;
  u8 addr_len;
  u8 err_type_len;
  u8 err_kind;
  u8 err_tflag;
  u8 err_msg_len;
  /* The message's length when its bytes are at err_msg_at (0: err_msg_at is its header's address). */
  u8 err_msg_cold_len;
  u8 _pad[1];
  /* runtime.types as this process has it, 0 when unknown. */
  u64 types;
  /* The error's itab when its type could not be read here (go_types.h), else 0. */
  u64 err_at;
  /* The error's message when it could not be read here (its bytes, or its header: err_msg_cold_len), else 0. */
  u64 err_msg_at;
  /* The command's name (the first argument, an interface{}) when it could not be read here, else 0. */
  u64 op_at;
  char op[32];
  char addr[64];
  char err_type[64];
  char err_msg[128];
  struct go_redis_arg args[GO_REDIS_ARGS];
};
PS_RECORD(go_redis_record);

#define PS_PARENT_LOCAL 1

/* In flight per goroutine and nesting depth: a command can run inside another on one goroutine (go-redis sends HELLO
 * and a CLIENT SETINFO pipeline through a connection's own client while the first command on it waits for it). */
struct inflight_key {
  struct ps_g_key g;
  u32 depth;
  u32 _pad;
};

/* The goroutine's number of go-redis operations under way, which keys the innermost. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct ps_g_key);
  __type(value, u32);
} go_redis_depth SEC(".maps");

/* Operations deeper than this on one goroutine are not traced (and a depth left by a panic unwinding through
 * go-redis, whose RET never ran, wraps around rather than stopping the goroutine's spans for good). */
#define GO_REDIS_MAX_DEPTH 8

struct inflight {
  struct go_redis_record rec;
  /* The goroutine's active span before this one, restored at RET. */
  struct ps_span_ctx prev;
  u8 had_prev;
  u8 _pad[7];
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct inflight_key);
  __type(value, struct inflight);
} go_redis_inflight SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct inflight);
} go_redis_scratch SEC(".maps");

/* Read one `interface{}` argument into a; returns its kind (0 when unreadable). */
static __always_inline u8 read_arg(struct go_redis_arg *a, u64 at, const struct go_redis_target *t) {
  struct go_iface v = {};
  if (bpf_probe_read_user(&v, sizeof(v), (const void *)at) != 0)
    return 0;
  struct ps_go_type ty = {};
  if (ps_go_type_read(v.tab, &t->type, &ty) != 0 || v.data == 0)
    return 0;
  a->kind = ty.kind;
  if (ty.kind == PS_GO_KIND_STRING || ty.kind == 23 /* slice: []byte */) {
    struct go_string s = {};
    if (bpf_probe_read_user(&s, sizeof(s), (const void *)v.data) != 0)
      return 0;
    a->size = s.len > 0xffffffff ? 0xffffffff : (u32)s.len;
    a->len = ps_read_go_str_or_at(a->data, GO_REDIS_ARG_CAP, s.ptr, s.len, &a->at);
  } else if (ty.kind >= 1 && ty.kind <= 14) {
    /* bool, the integers and the floats: the data word points at the value. */
    if (bpf_probe_read_user(a->data, 8, (const void *)v.data) == 0)
      a->len = 8;
    else
      a->at = v.data;
  }
  return ty.kind;
}

/* The part of entry both probes share: span identity, parent, server address and database. */
static __always_inline struct inflight *begin(struct pt_regs *ctx, u64 g, u64 call_ctx, u64 client, s64 types_from,
                                              const struct go_redis_target *t, u8 op_kind) {
  u32 zero = 0;
  struct inflight *inf = bpf_map_lookup_elem(&go_redis_scratch, &zero);
  if (!inf)
    return NULL;
  __builtin_memset(inf, 0, sizeof(*inf));
  struct go_redis_record *r = &inf->rec;
  r->start_ns = bpf_ktime_get_ns();
  r->pid = ps_tgid();
  r->op_kind = op_kind;
  if (t->types_known)
    inf->rec.types = PT_REGS_IP(ctx) + (u64)types_from;

  struct ps_span_ctx sc = {};
  struct ps_span_ctx *active = ps_go_ctx_get(g);
  if (active) {
    inf->prev = *active;
    inf->had_prev = 1;
  }
  /* Nested in an operation of ours on this goroutine: that one (the active span) is the parent. */
  struct ps_g_key gk = ps_g_key_of(g);
  u32 *depth = bpf_map_lookup_elem(&go_redis_depth, &gk);
  struct ps_span_ctx parent = {};
  bool has_parent;
  if (depth && *depth > 0) {
    parent = inf->prev;
    has_parent = inf->had_prev;
  } else {
    has_parent = ps_go_parent(g, call_ctx, &parent) == 0;
  }
  if (has_parent) {
    __builtin_memcpy(r->parent_span_id, parent.span_id, 8);
    r->parent = PS_PARENT_LOCAL;
  }
  ps_span_begin(has_parent ? &parent : NULL, &sc);
  __builtin_memcpy(r->trace_id, sc.trace_id, 16);
  __builtin_memcpy(r->span_id, sc.span_id, 8);
  r->flags = sc.flags;

  /* An unsampled operation is still kept (its context is what nested operations inherit) but reads no memory. */
  u64 opt = client && (sc.flags & PS_FLAG_SAMPLED) ? ps_read_u64(client + t->client_opt) : 0;
  if (opt) {
    r->addr_len = ps_read_go_str_at(r->addr, sizeof(r->addr), opt + t->opt_addr);
    r->db = (s64)ps_read_u64(opt + t->opt_db);
  }
  /* Active while it runs: what go-redis does inside (connection set-up commands) nests under it. */
  ps_go_ctx_set(g, &sc);
  return inf;
}

/* Keep the operation under the goroutine's next depth. */
static __always_inline void store(u64 g, struct inflight *inf) {
  struct ps_g_key gk = ps_g_key_of(g);
  u32 *d = bpf_map_lookup_elem(&go_redis_depth, &gk);
  u32 depth = d ? *d : 0;
  if (depth >= GO_REDIS_MAX_DEPTH)
    depth = 0;
  struct inflight_key k = {.g = gk, .depth = depth, ._pad = 0};
  bpf_map_update_elem(&go_redis_inflight, &k, inf, BPF_ANY);
  u32 next = depth + 1;
  bpf_map_update_elem(&go_redis_depth, &gk, &next, BPF_ANY);
}

/* github.com/redis/go-redis/v9.(*baseClient).process: RAX=c, RBX/RCX=ctx, RDI/RSI=cmd. */
SEC("uprobe/go_redis_process")
int uprobe_process(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  u64 client = GO_ARG1(ctx);
  u64 cmd = GO_ARG5(ctx);
  struct go_redis_target *t = ps_target();
  if (!t || cmd == 0)
    return 0;
  struct inflight *inf = begin(ctx, g, GO_ARG3(ctx), client, t->types_from_process, t, GO_REDIS_COMMAND);
  if (!inf)
    return 0;
  struct go_redis_record *r = &inf->rec;
  if (!(r->flags & PS_FLAG_SAMPLED)) {
    store(g, inf);
    return 0;
  }

  /* cmd points at the concrete command, whose first field is the embedded baseCmd. */
  struct go_slice args = {};
  if (bpf_probe_read_user(&args, sizeof(args), (const void *)(cmd + t->cmd_args)) == 0 && args.ptr) {
    r->arg_count = args.len > 0xffffffff ? 0xffffffff : (u32)args.len;
    if (args.len > 0 && read_arg(&r->args[0], args.ptr, t) == PS_GO_KIND_STRING && r->args[0].len > 0) {
      u32 n = r->args[0].len;
      r->op_len = n;
      /* The name's first 32 bytes are also the op (most names fit; the arg keeps the full size). */
      __builtin_memcpy(r->op, r->args[0].data, GO_REDIS_ARG_CAP);
    } else if (args.len > 0 && r->types) {
      /* A constant ("get") on a page not mapped yet, or its type's: user space reads it (go_types.h). */
      r->op_at = args.ptr;
    }
    if (go_redis_query_text) {
#pragma unroll
      for (int i = 1; i < GO_REDIS_ARGS; i++) {
        if ((u64)i >= args.len)
          break;
        read_arg(&r->args[i], args.ptr + (u64)i * sizeof(struct go_iface), t);
      }
    }
  }
  store(g, inf);
  return 0;
}

/* (*baseClient).processPipeline / processTxPipeline: RAX=c, RBX/RCX=ctx, RDI/RSI/R8=cmds. */
static __always_inline int pipeline_entry(struct pt_regs *ctx, u8 op_kind) {
  u64 g = GO_G(ctx);
  u64 client = GO_ARG1(ctx);
  u64 len = GO_ARG5(ctx);
  struct go_redis_target *t = ps_target();
  if (!t)
    return 0;
  s64 from = op_kind == GO_REDIS_PIPELINE ? t->types_from_pipeline : t->types_from_tx_pipeline;
  struct inflight *inf = begin(ctx, g, GO_ARG3(ctx), client, from, t, op_kind);
  if (!inf)
    return 0;
  inf->rec.batch_size = len > 0xffffffff ? 0xffffffff : (u32)len;
  store(g, inf);
  return 0;
}

SEC("uprobe/go_redis_processPipeline")
int uprobe_processPipeline(struct pt_regs *ctx) {
  return pipeline_entry(ctx, GO_REDIS_PIPELINE);
}

SEC("uprobe/go_redis_processTxPipeline")
int uprobe_processTxPipeline(struct pt_regs *ctx) {
  return pipeline_entry(ctx, GO_REDIS_TX_PIPELINE);
}

/* Every RET: the error (RAX=itab, RBX=data), the goroutine's previous span back, the record out. */
static __always_inline int finish(struct pt_regs *ctx, u8 op_kind) {
  u64 g = GO_G(ctx);
  u64 err_tab = GO_ARG1(ctx);
  u64 err_data = GO_ARG2(ctx);
  struct ps_g_key gk = ps_g_key_of(g);
  u32 *d = bpf_map_lookup_elem(&go_redis_depth, &gk);
  if (!d || *d == 0)
    return 0;
  u32 depth = *d - 1;
  if (depth == 0)
    bpf_map_delete_elem(&go_redis_depth, &gk);
  else
    *d = depth;
  struct inflight_key k = {.g = gk, .depth = depth, ._pad = 0};
  struct inflight *inf = bpf_map_lookup_elem(&go_redis_inflight, &k);
  if (!inf || inf->rec.op_kind != op_kind)
    return 0;
  struct go_redis_record *r = &inf->rec;
  r->end_ns = bpf_ktime_get_ns();
  if (inf->had_prev)
    ps_go_ctx_set(g, &inf->prev);
  else
    ps_go_ctx_clear(g);
  struct go_redis_target *t = (r->flags & PS_FLAG_SAMPLED) ? ps_target() : NULL;
  if (err_tab != 0) {
    r->has_error = 1;
    struct ps_go_type ty = {};
    if (t) {
      r->err_type_len = ps_go_itab_describe(r->err_type, sizeof(r->err_type), err_tab, r->types, &t->type, &ty,
                                            &r->err_at);
      r->err_kind = ty.kind;
      r->err_tflag = ty.tflag;
    }
    /* A string error's message (redis.Nil's "redis: nil" among them); read for a type not read here too, and kept
     * by user space only if that type is a string. */
    if (t && err_data && (ty.kind == PS_GO_KIND_STRING || r->err_at))
      r->err_msg_len = ps_read_go_str_at_or_at(r->err_msg, sizeof(r->err_msg), err_data, &r->err_msg_at,
                                               &r->err_msg_cold_len);
  }
  if (r->flags & PS_FLAG_SAMPLED)
    ps_submit(r, sizeof(*r));
  bpf_map_delete_elem(&go_redis_inflight, &k);
  return 0;
}

SEC("uprobe/go_redis_process_ret")
int uprobe_process_ret(struct pt_regs *ctx) {
  return finish(ctx, GO_REDIS_COMMAND);
}

SEC("uprobe/go_redis_processPipeline_ret")
int uprobe_processPipeline_ret(struct pt_regs *ctx) {
  return finish(ctx, GO_REDIS_PIPELINE);
}

SEC("uprobe/go_redis_processTxPipeline_ret")
int uprobe_processTxPipeline_ret(struct pt_regs *ctx) {
  return finish(ctx, GO_REDIS_TX_PIPELINE);
}
