/* net/http client: one span per net/http.(*Transport).roundTrip(req *Request) (*Response, error) call, i.e. one per
 * HTTP exchange (each redirect hop and each Client.Do through the default transport), and W3C propagation.
 *
 * Entry (RAX=t, RBX=req) reads the request, takes its parent from the request's context (the nearest span registered
 * on Request.ctx's chain, e.g. the server span whose r.Context() a worker goroutine got) or else the goroutine's
 * active span (go_context.h ps_go_parent), makes the span's ids and decides sampling. Each RET reads the results
 * (RAX=*Response, RBX/RCX=error) and submits the record.
 *
 * Same-host propagation (works under kernel lockdown): uprobe_persistConn_roundTrip publishes the span in
 * ps_conn_spans (go_context.h) under the connection's (client ip, port, server ip, port) before the request is
 * written; the server probe of another instrumented process on this host finds it by the same addresses. RET removes
 * it.
 *
 * Header propagation: HTTP/1 requests are written by the connection's writeLoop goroutine, not the caller's, through
 * Request.write -> Header.writeSubset(w io.Writer, ...) with w the connection's *bufio.Writer. Entry keys the span
 * context by the request's Header map pointer; uprobe_writeSubset finds it by the same pointer, appends
 * "Traceparent: 00-<trace>-<span>-<flags>\r\n" at bufio.Writer.buf[n:] with bpf_probe_write_user and advances n.
 * The bytes go out with the rest of the header block. Nothing is written when the request already carries a
 * Traceparent, when the buffer lacks room, or when that program is not loaded (kernels that forbid the helper). */
#include "common.h"
#include "go_context.h"
#include "sampling.h"
#include "nethttp.h"

/* Struct field offsets of one process, written by user space into ps_targets before the uprobes attach.
 * Mirrored by `Offsets` in src/instrumentations/NetHttpClient.ts, checked against this BTF at load. */
struct nethttp_client_offsets {
  struct ps_swiss_offsets swiss;
  u64 request_method;
  u64 request_url;
  u64 request_header;
  u64 url_scheme;
  u64 url_host;
  u64 url_path;
  u64 url_raw_query;
  u64 response_status_code;
  u64 bufio_writer_buf;
  u64 bufio_writer_n;
  /* Same-host propagation: persistConn.conn (a net.Conn), then the net package's chain. */
  u64 pconn_conn;
  /* Request.ctx (a context.Context), for the parent (ps_go_parent); 0: unknown, the goroutine's span only. */
  u64 request_ctx;
  struct ps_tcp_offsets tcp;
};

PS_TARGETS(struct nethttp_client_offsets);

/* Mirrored by `Record` in src/instrumentations/NetHttpClient.ts, checked against this BTF at load. */
struct nethttp_client_record {
  struct ps_http_head head;
  u8 has_error;
  u8 method_len;
  u8 scheme_len;
  u8 host_len;
  u16 path_len;
  u16 query_len;
  u8 propagated;
  /* The span was published in ps_conn_spans under its connection (same-host propagation). */
  u8 linked;
  /* The connection's local port when linked, else 0. */
  u16 local_port;
  u8 _pad[4];
  char method[16];
  char scheme[8];
  char host[64];
  char path[128];
  char query[64];
};
PS_RECORD(nethttp_client_record);

struct client_inflight {
  struct nethttp_client_record rec;
  u64 header;
  /* Where the span is published when rec.linked. */
  struct ps_conn_key conn;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct ps_g_key);
  __type(value, struct client_inflight);
} nethttp_client_inflight SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct client_inflight);
} nethttp_client_scratch SEC(".maps");

/* Header map pointer -> what to inject, and which in-flight span to mark as propagated. */
struct pending_traceparent {
  struct ps_span_ctx sc;
  u64 caller_g;
};

struct header_key {
  u32 tgid;
  u32 _pad;
  u64 header;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct header_key);
  __type(value, struct pending_traceparent);
} nethttp_client_pending SEC(".maps");

/* Remove the connection's entry if it is still this span's (the connection may since carry another request). */
static __always_inline void ps_conn_unpublish(const struct ps_conn_key *k, const u8 *span_id) {
  struct ps_span_ctx *cur = bpf_map_lookup_elem(&ps_conn_spans, k);
  if (!cur)
    return;
  u64 a, b;
  __builtin_memcpy(&a, cur->span_id, 8);
  __builtin_memcpy(&b, span_id, 8);
  if (a == b)
    bpf_map_delete_elem(&ps_conn_spans, k);
}

SEC("uprobe/net_http_Transport_roundTrip")
int uprobe_roundTrip(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  u64 req = GO_ARG2(ctx);
  if (req == 0)
    return 0;
  u32 pid = ps_tgid();
  struct nethttp_client_offsets *off = ps_target();
  if (!off)
    return 0;
  u32 zero = 0;
  struct client_inflight *inf = bpf_map_lookup_elem(&nethttp_client_scratch, &zero);
  if (!inf)
    return 0;
  __builtin_memset(inf, 0, sizeof(*inf));
  struct nethttp_client_record *r = &inf->rec;

  r->head.start_ns = bpf_ktime_get_ns();
  r->head.pid = pid;
  inf->header = ps_read_u64(req + off->request_header);

  struct ps_span_ctx sc = {};
  struct ps_span_ctx parent = {};
  u64 rctx = off->request_ctx ? ps_read_u64(req + off->request_ctx + 8) : 0;
  bool has_parent = ps_go_parent(g, rctx, &parent) == 0;
  ps_span_begin(has_parent ? &parent : NULL, &sc);
  ps_http_head_ids(&r->head, &sc, has_parent ? &parent : NULL, PS_PARENT_LOCAL);

  /* The request's strings only for a record that will be submitted: an unsampled call costs no string reads (its
   * context still propagates, with the sampled flag off). */
  if (sc.flags & PS_FLAG_SAMPLED) {
    r->method_len = ps_read_go_str_at(r->method, sizeof(r->method), req + off->request_method);
    u64 url = ps_read_u64(req + off->request_url);
    if (url) {
      r->scheme_len = ps_read_go_str_at(r->scheme, sizeof(r->scheme), url + off->url_scheme);
      r->host_len = ps_read_go_str_at(r->host, sizeof(r->host), url + off->url_host);
      r->path_len = ps_read_go_str_at(r->path, sizeof(r->path), url + off->url_path);
      r->query_len = ps_read_go_str_at(r->query, sizeof(r->query), url + off->url_raw_query);
    }
  }

  /* A request that already carries a traceparent (e.g. an SDK-instrumented app) keeps its own. */
  struct ps_span_ctx existing = {};
  if (inf->header && ps_header_traceparent(inf->header, &off->swiss, &existing) != 0) {
    struct header_key hk = {.tgid = r->head.pid, ._pad = 0, .header = inf->header};
    struct pending_traceparent p = {.sc = sc, .caller_g = g};
    bpf_map_update_elem(&nethttp_client_pending, &hk, &p, BPF_ANY);
  }

  struct ps_g_key key = ps_g_key_of(g);
  bpf_map_update_elem(&nethttp_client_inflight, &key, inf, BPF_ANY);
  return 0;
}

SEC("uprobe/net_http_Transport_roundTrip_ret")
int uprobe_roundTrip_ret(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  struct ps_g_key key = ps_g_key_of(g);
  struct client_inflight *inf = bpf_map_lookup_elem(&nethttp_client_inflight, &key);
  if (!inf)
    return 0;
  struct nethttp_client_record *r = &inf->rec;
  r->head.end_ns = bpf_ktime_get_ns();
  u64 resp = GO_ARG1(ctx);
  u64 err_tab = GO_ARG2(ctx);
  r->has_error = err_tab != 0;
  struct nethttp_client_offsets *off = ps_target();
  if (resp && off)
    r->head.status = (u16)ps_read_u64(resp + off->response_status_code);
  if (inf->header) {
    struct header_key hk = {.tgid = r->head.pid, ._pad = 0, .header = inf->header};
    bpf_map_delete_elem(&nethttp_client_pending, &hk);
  }
  if (r->linked)
    ps_conn_unpublish(&inf->conn, r->head.span_id);
  if (r->head.flags & PS_FLAG_SAMPLED)
    ps_submit(r, sizeof(*r));
  bpf_map_delete_elem(&nethttp_client_inflight, &key);
  return 0;
}

/* net/http.(*persistConn).roundTrip(pc *persistConn, req *transportRequest): RAX=pc. Called by Transport.roundTrip
 * on the caller's goroutine once a connection is chosen, before the request is handed to the writeLoop; again on a
 * retry over a fresh connection. Publishes the goroutine's in-flight client span under the connection's addresses so
 * a server probe on this host can continue the trace without any header being written. */
SEC("uprobe/net_http_persistConn_roundTrip")
int uprobe_persistConn_roundTrip(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  struct ps_g_key key = ps_g_key_of(g);
  struct client_inflight *inf = bpf_map_lookup_elem(&nethttp_client_inflight, &key);
  if (!inf)
    return 0;
  /* Registers first: the target lookup's task reads would otherwise leave clang holding a moved ctx pointer,
   * which the verifier refuses. */
  u64 pc = GO_ARG1(ctx);
  struct nethttp_client_offsets *off = ps_target();
  if (!off || !off->tcp.enabled || pc == 0)
    return 0;
  struct go_iface conn = {};
  if (bpf_probe_read_user(&conn, sizeof(conn), (const void *)(pc + off->pconn_conn)) != 0)
    return 0;
  struct ps_addr local = {}, remote = {};
  if (ps_tcp_conn_addrs(conn.data, &off->tcp, &local, &remote) != 0)
    return 0;
  if (inf->rec.linked)
    ps_conn_unpublish(&inf->conn, inf->rec.head.span_id);
  struct ps_span_ctx sc = {};
  __builtin_memcpy(sc.trace_id, inf->rec.head.trace_id, 16);
  __builtin_memcpy(sc.span_id, inf->rec.head.span_id, 8);
  sc.flags = inf->rec.head.flags;
  ps_conn_key_of(&inf->conn, &local, &remote);
  bpf_map_update_elem(&ps_conn_spans, &inf->conn, &sc, BPF_ANY);
  inf->rec.linked = 1;
  inf->rec.local_port = local.port;
  return 0;
}

#define TP_LINE_LEN (13 + PS_TRACEPARENT_LEN + 2)

/* net/http.Header.writeSubset(h Header, w io.Writer, exclude map[string]bool, trace *httptrace.ClientTrace):
 * RAX=h, RBX/RCX=w. Runs on the connection's writeLoop goroutine. */
SEC("uprobe/net_http_Header_writeSubset")
int uprobe_writeSubset(struct pt_regs *ctx) {
  u32 pid = ps_tgid();
  struct header_key hk = {.tgid = pid, ._pad = 0, .header = GO_ARG1(ctx)};
  struct pending_traceparent *p = bpf_map_lookup_elem(&nethttp_client_pending, &hk);
  if (!p)
    return 0;
  struct pending_traceparent pend = *p;
  bpf_map_delete_elem(&nethttp_client_pending, &hk);

  u64 w = GO_ARG3(ctx);
  struct nethttp_client_offsets *off = ps_target();
  if (w == 0 || !off)
    return 0;
  struct go_slice buf = {};
  if (bpf_probe_read_user(&buf, sizeof(buf), (const void *)(w + off->bufio_writer_buf)) != 0)
    return 0;
  s64 n = (s64)ps_read_u64(w + off->bufio_writer_n);
  /* Sanity: a *bufio.Writer has 0 <= n <= len(buf) <= cap(buf); anything else means w is another writer type. */
  if (buf.ptr == 0 || n < 0 || (u64)n > buf.len || buf.len > buf.cap || buf.len - (u64)n < TP_LINE_LEN)
    return 0;

  u8 line[TP_LINE_LEN] = {'T', 'r', 'a', 'c', 'e', 'p', 'a', 'r', 'e', 'n', 't', ':', ' '};
  ps_traceparent_format(line + 13, &pend.sc);
  line[TP_LINE_LEN - 2] = '\r';
  line[TP_LINE_LEN - 1] = '\n';
  if (bpf_probe_write_user((void *)(buf.ptr + (u64)n), line, TP_LINE_LEN) != 0)
    return 0;
  s64 new_n = n + TP_LINE_LEN;
  if (bpf_probe_write_user((void *)(w + off->bufio_writer_n), &new_n, sizeof(new_n)) != 0)
    return 0;

  struct ps_g_key ck = ps_g_key_of(pend.caller_g);
  struct client_inflight *inf = bpf_map_lookup_elem(&nethttp_client_inflight, &ck);
  if (inf)
    inf->rec.propagated = 1;
  return 0;
}
