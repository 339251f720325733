/* The goroutine -> active span context map every Go probe shares, plus span/trace id generation.
 *
 * The go_context daemon probe owns the map; instrument probes declare it identically (this header) and the loader
 * hands them the daemon's map through reuseMaps, so a client span started on a goroutine finds the server span that
 * goroutine is serving. Keys carry the process id because one map serves every traced process.
 *
 * Needs common.h first. */
#pragma once

#ifndef PS_GO_CTX_ENTRIES
#define PS_GO_CTX_ENTRIES 16384
#endif

#define PS_FLAG_SAMPLED 0x01

/* A W3C span context (the part that crosses process boundaries). */
struct ps_span_ctx {
  u8 trace_id[16];
  u8 span_id[8];
  u8 flags;
  u8 _pad[7];
};

/* One goroutine of one process. g pointers are only unique within a process. */
struct ps_g_key {
  u32 tgid;
  u32 _pad;
  u64 g;
};

/* LRU: goroutines that exit without their entry being cleared (e.g. children that inherited a context) age out
 * instead of filling the map. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, PS_GO_CTX_ENTRIES);
  __type(key, struct ps_g_key);
  __type(value, struct ps_span_ctx);
} go_spans SEC(".maps");

/* One TCP connection as both of its ends see it on this host: the client's (ip, port) and the server's, IPv4 as
 * v4-mapped IPv6 so an AF_INET client and a dual-stack (AF_INET6) server agree on the bytes. */
struct ps_conn_key {
  u8 client_ip[16];
  u8 server_ip[16];
  u16 client_port;
  u16 server_port;
  u32 _pad;
};

#ifndef PS_CONN_SPANS_ENTRIES
#define PS_CONN_SPANS_ENTRIES 8192
#endif

/* Connection -> the client span whose request is on it, for same-host propagation without writing user memory.
 * The client sets it before the request is written and deletes it when the exchange returns; a server on the other
 * end looks its connection up when the request carries no traceparent. Keys carry no pid: they are the
 * point where two processes meet. LRU: an entry whose client died mid-request ages out. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, PS_CONN_SPANS_ENTRIES);
  __type(key, struct ps_conn_key);
  __type(value, struct ps_span_ctx);
} ps_conn_spans SEC(".maps");

static __always_inline u32 ps_tgid(void) {
  return (u32)(bpf_get_current_pid_tgid() >> 32);
}

static __always_inline struct ps_g_key ps_g_key_of(u64 g) {
  struct ps_g_key k = {.tgid = ps_tgid(), ._pad = 0, .g = g};
  return k;
}

/* The span context active on goroutine g, or NULL. */
static __always_inline struct ps_span_ctx *ps_go_ctx_get(u64 g) {
  struct ps_g_key k = ps_g_key_of(g);
  return bpf_map_lookup_elem(&go_spans, &k);
}

static __always_inline void ps_go_ctx_set(u64 g, const struct ps_span_ctx *sc) {
  struct ps_g_key k = ps_g_key_of(g);
  bpf_map_update_elem(&go_spans, &k, sc, BPF_ANY);
}

static __always_inline void ps_go_ctx_clear(u64 g) {
  struct ps_g_key k = ps_g_key_of(g);
  bpf_map_delete_elem(&go_spans, &k);
}

/* ---- context.Context parents ----
 *
 * A goroutine's entry in go_spans follows `go` statements only. Work handed to another goroutine by other means (a
 * worker pool fed over a channel, a callback run elsewhere) carries the request's context.Context instead, so a span
 * that is the parent of work done under a context (a server span) also registers that context's value pointer here
 * for as long as it runs, and a client span looks its own context's chain up before the goroutine's entry.
 * See docs/context-propagation.md. */

#ifndef PS_CTX_SPANS_ENTRIES
#define PS_CTX_SPANS_ENTRIES 8192
#endif

/* How many contexts of a chain are looked at, the client's own included. Real chains are short (a net/http
 * request's is about five: cancel, two values, cancel, background; a handler adds one per WithTimeout/WithValue);
 * the bound keeps the walk's cost and the verifier's work fixed. */
#ifndef PS_CTX_CHAIN_MAX
#define PS_CTX_CHAIN_MAX 16
#endif

/* One context value of one process: the data word of a context.Context interface, i.e. the pointer to the
 * *cancelCtx, *valueCtx, ... Pointers are only unique within a process. */
struct ps_ctx_key {
  u32 tgid;
  u32 _pad;
  u64 ctx;
};

/* ps_ctx_spans: (tgid, context value pointer) -> span context, shared through GoContext.sharedMaps. LRU: a span
 * whose end was never seen (a panic unwinding past its RET) ages out instead of filling the map. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, PS_CTX_SPANS_ENTRIES);
  __type(key, struct ps_ctx_key);
  __type(value, struct ps_span_ctx);
} ps_ctx_spans SEC(".maps");

/* Register the span that is the parent of work done under the context whose value pointer is ctx. */
static __always_inline void ps_ctx_span_set(u64 ctx, const struct ps_span_ctx *sc) {
  if (ctx == 0)
    return;
  struct ps_ctx_key k = {.tgid = ps_tgid(), ._pad = 0, .ctx = ctx};
  bpf_map_update_elem(&ps_ctx_spans, &k, sc, BPF_ANY);
}

/* Unregister it when that span ends (the context's memory may later hold another request's context). */
static __always_inline void ps_ctx_span_clear(u64 ctx) {
  if (ctx == 0)
    return;
  struct ps_ctx_key k = {.tgid = ps_tgid(), ._pad = 0, .ctx = ctx};
  bpf_map_delete_elem(&ps_ctx_spans, &k);
}

/* The parent of a span started on goroutine g whose context.Context interface holds `ctx` as its data word (0
 * when unknown): the nearest context on ctx's parent chain that has a span, else the goroutine's active span
 * (go_spans). 0 and *out filled when found, -1 when there is none.
 *
 * The walk: every context type of the standard library (cancelCtx, timerCtx and afterFuncCtx through their
 * embedded cancelCtx, valueCtx, withoutCancelCtx, stopCtx) has its parent Context interface as its first field in
 * Go 1.25-1.27, so at a value's address are the parent's (itab, data) words. It stops at a nil itab: the root
 * contexts (Background, TODO) are zero-size values that point at runtime.zerobase, whose word is 0. A context type
 * of another package breaks the assumption: its first two words are then read as a parent and only ever used as a
 * lookup key, so the walk misses (or, with odds of a pointer collision, finds a wrong span) and ends within the
 * bound; the goroutine's entry is the fallback. The context hit wins over the goroutine's entry because a worker
 * goroutine's entry is whatever its creator was serving back then, or none. */
static __always_inline int ps_go_parent(u64 g, u64 ctx, struct ps_span_ctx *out) {
  struct ps_ctx_key k = {.tgid = ps_tgid(), ._pad = 0, .ctx = 0};
  for (int i = 0; i < PS_CTX_CHAIN_MAX; i++) {
    if (ctx == 0)
      break;
    k.ctx = ctx;
    struct ps_span_ctx *hit = bpf_map_lookup_elem(&ps_ctx_spans, &k);
    if (hit) {
      *out = *hit;
      return 0;
    }
    u64 parent[2] = {};
    if (bpf_probe_read_user(parent, sizeof(parent), (const void *)ctx) != 0 || parent[0] == 0)
      break;
    ctx = parent[1];
  }
  struct ps_span_ctx *sc = ps_go_ctx_get(g);
  if (!sc)
    return -1;
  *out = *sc;
  return 0;
}

/* Random ids; an all-zero id is invalid in W3C, so the first word is forced non-zero. */
static __always_inline void ps_gen_span_id(u8 *span_id) {
  u32 a = bpf_get_prandom_u32() | 1;
  u32 b = bpf_get_prandom_u32();
  __builtin_memcpy(span_id, &a, 4);
  __builtin_memcpy(span_id + 4, &b, 4);
}

static __always_inline void ps_gen_trace_id(u8 *trace_id) {
  u32 w[4];
  w[0] = bpf_get_prandom_u32();
  w[1] = bpf_get_prandom_u32();
  w[2] = bpf_get_prandom_u32();
  w[3] = bpf_get_prandom_u32() | 1;
  __builtin_memcpy(trace_id, w, 16);
}

/* ---- W3C traceparent text: "00-<32 hex trace>-<16 hex span>-<2 hex flags>" (55 bytes) ---- */

#define PS_TRACEPARENT_LEN 55

/* A hex digit's value (0-15) by its character, 0x10 for any other character ('A'-'F' are accepted too). A table rather
 * than comparisons: each comparison the verifier cannot decide splits its paths, and three ranges per character over
 * the 50 characters of a traceparent made nethttp_server's entry program the costliest to verify of all (22 368
 * instructions processed for 1 365). Read from .rodata with the character as index: no branch at all. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Winitializer-overrides"
static const u8 ps_hex_table[256] = {
    [0 ... 255] = 0x10,
    ['0'] = 0, ['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4, ['5'] = 5, ['6'] = 6, ['7'] = 7, ['8'] = 8, ['9'] = 9,
    ['a'] = 10, ['b'] = 11, ['c'] = 12, ['d'] = 13, ['e'] = 14, ['f'] = 15,
    ['A'] = 10, ['B'] = 11, ['C'] = 12, ['D'] = 13, ['E'] = 14, ['F'] = 15,
};
#pragma clang diagnostic pop

/* `nbytes` bytes from 2 * nbytes hex characters; -1 if any is not a hex digit (dst then holds garbage). */
static __always_inline int ps_hex_decode(const u8 *src, u8 *dst, u32 nbytes) {
  u8 bad = 0;
  for (u32 i = 0; i < nbytes; i++) {
    u8 hi = ps_hex_table[src[2 * i]];
    u8 lo = ps_hex_table[src[2 * i + 1]];
    bad |= hi | lo;
    dst[i] = (u8)((hi << 4) | (lo & 0x0f));
  }
  return (bad & 0x10) ? -1 : 0;
}

/* Parse a traceparent; 0 on success. Rejects version ff, bad separators, bad hex and all-zero ids. */
static __always_inline int ps_traceparent_parse(const u8 *tp, struct ps_span_ctx *out) {
  if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-')
    return -1;
  u8 version[1];
  if (ps_hex_decode(tp, version, 1) != 0 || version[0] == 0xff)
    return -1;
  if (ps_hex_decode(tp + 3, out->trace_id, 16) != 0 || ps_hex_decode(tp + 36, out->span_id, 8) != 0 ||
      ps_hex_decode(tp + 53, &out->flags, 1) != 0)
    return -1;
  u64 t0, t1, s0;
  __builtin_memcpy(&t0, out->trace_id, 8);
  __builtin_memcpy(&t1, out->trace_id + 8, 8);
  __builtin_memcpy(&s0, out->span_id, 8);
  if ((t0 | t1) == 0 || s0 == 0)
    return -1;
  return 0;
}

static __always_inline void ps_hex_encode(u8 *dst, const u8 *src, u32 nbytes) {
  const char digits[] = "0123456789abcdef";
  for (u32 i = 0; i < nbytes; i++) {
    dst[2 * i] = digits[(src[i] >> 4) & 0xf];
    dst[2 * i + 1] = digits[src[i] & 0xf];
  }
}

/* Write the 55-byte traceparent of sc into dst. */
static __always_inline void ps_traceparent_format(u8 *dst, const struct ps_span_ctx *sc) {
  dst[0] = '0';
  dst[1] = '0';
  dst[2] = '-';
  ps_hex_encode(dst + 3, sc->trace_id, 16);
  dst[35] = '-';
  ps_hex_encode(dst + 36, sc->span_id, 8);
  dst[52] = '-';
  ps_hex_encode(dst + 53, &sc->flags, 1);
}
