/* net/http server: one span per net/http.serverHandler.ServeHTTP(sh, rw ResponseWriter, req *Request) call.
 *
 * Entry (just past the stack-check prologue; RAX=sh, RBX/RCX=rw, RDI=req) reads the request, takes the incoming
 * traceparent from req.Header, makes the span's ids, decides sampling, keeps the in-flight record per goroutine and
 * publishes the span as the goroutine's active context. Without an incoming traceparent, the connection's
 * addresses are looked up in ps_conn_spans (go_context.h): a client probe on this host publishes its span there, so
 * the trace continues across processes without writing the request. Each RET reads what only exists afterwards
 * (the ServeMux pattern, the status written), submits the record when sampled, and clears the goroutine's context.
 *
 * Entry also registers the request's context.Context (Request.ctx's data word) as this span's (ps_ctx_spans, see
 * go_context.h) until RET: a worker goroutine that gets r.Context() over a channel makes its client spans children
 * of this span although go_spans knows nothing of it. */
#include "common.h"
#include "go_context.h"
#include "sampling.h"
#include "nethttp.h"
#include "nethttp_server.h"

/* Struct field offsets of one process (Go versions differ), written by user space into ps_targets before the
 * uprobes attach. Mirrored by `Offsets` in src/instrumentations/NetHttpServer.ts, checked against this BTF at load. */
struct nethttp_server_offsets {
  struct ps_swiss_offsets swiss;
  u64 request_method;
  u64 request_url;
  u64 request_proto_major;
  u64 request_proto_minor;
  u64 request_header;
  u64 request_host;
  u64 request_remote_addr;
  u64 request_tls;
  u64 request_pattern;
  u64 url_scheme;
  u64 url_path;
  u64 response_status;
  /* Same-host propagation: http.response.conn, http.conn.rwc, then the net package's chain. */
  u64 response_conn;
  u64 conn_rwc;
  /* Request.ctx (a context.Context): its value is registered as this span's context (ps_ctx_spans) while the
   * handler runs, for work handed to other goroutines with r.Context(). 0: unknown, nothing registered. */
  u64 request_ctx;
  struct ps_tcp_offsets tcp;
};

PS_TARGETS(struct nethttp_server_offsets);

/* The record and the in-flight map (`nethttp_server_inflight`), shared with go_panic.bpf.c. */

/* The in-flight value is too large for the 512-byte stack: build it in per-CPU scratch. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct server_inflight);
} nethttp_server_scratch SEC(".maps");

/* The client span published for the connection this response is written to. 0 on a hit. */
static __always_inline int ps_conn_parent(u64 resp, const struct nethttp_server_offsets *off, struct ps_span_ctx *out) {
  u64 c = ps_read_u64(resp + off->response_conn);
  if (c == 0)
    return -1;
  struct go_iface rwc = {};
  if (bpf_probe_read_user(&rwc, sizeof(rwc), (const void *)(c + off->conn_rwc)) != 0)
    return -1;
  struct ps_addr local = {}, remote = {};
  if (ps_tcp_conn_addrs(rwc.data, &off->tcp, &local, &remote) != 0)
    return -1;
  struct ps_conn_key k = {};
  ps_conn_key_of(&k, &remote, &local);
  struct ps_span_ctx *sc = bpf_map_lookup_elem(&ps_conn_spans, &k);
  if (!sc)
    return -1;
  *out = *sc;
  return 0;
}

SEC("uprobe/net_http_serverHandler_ServeHTTP")
int uprobe_ServeHTTP(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  u64 req = GO_ARG4(ctx);
  if (req == 0)
    return 0;
  u32 pid = ps_tgid();
  struct nethttp_server_offsets *off = ps_target();
  if (!off)
    return 0;
  u32 zero = 0;
  struct server_inflight *inf = bpf_map_lookup_elem(&nethttp_server_scratch, &zero);
  if (!inf)
    return 0;
  __builtin_memset(inf, 0, sizeof(*inf));
  struct nethttp_server_record *r = &inf->rec;
  inf->req = req;
  inf->resp = GO_ARG3(ctx);

  r->head.start_ns = bpf_ktime_get_ns();
  r->head.pid = pid;
  r->proto_major = (u8)ps_read_u64(req + off->request_proto_major);
  r->proto_minor = (u8)ps_read_u64(req + off->request_proto_minor);

  struct ps_span_ctx parent = {};
  struct ps_span_ctx sc = {};
  bool has_parent = ps_header_traceparent(ps_read_u64(req + off->request_header), &off->swiss, &parent) == 0;
  /* No header: an instrumented client on this host may have published its span under this connection. Only
   * HTTP/1, where rw is *http.response (HTTP/2's writer has no http.conn). */
  if (!has_parent && r->proto_major == 1 && inf->resp && off->tcp.enabled &&
      ps_conn_parent(inf->resp, off, &parent) == 0) {
    has_parent = true;
    r->linked = 1;
  }
  /* The parent's other flag bits (e.g. W3C random) are kept; ours says sampled. */
  ps_span_begin(has_parent ? &parent : NULL, &sc);
  ps_http_head_ids(&r->head, &sc, has_parent ? &parent : NULL, PS_PARENT_REMOTE);

  /* The request's strings only for a record that will be submitted: an unsampled request costs no string reads
   * (its context is still kept, so its children follow the decision). */
  if (sc.flags & PS_FLAG_SAMPLED) {
    r->method_len = ps_read_go_str_at(r->method, sizeof(r->method), req + off->request_method);
    r->host_len = ps_read_go_str_at(r->host, sizeof(r->host), req + off->request_host);
    r->remote_len = ps_read_go_str_at(r->remote, sizeof(r->remote), req + off->request_remote_addr);
    /* 0: offset unknown (stripped binary, field not in the shipped table); Method is at 0, so TLS never is. */
    if (off->request_tls)
      r->tls = ps_read_u64(req + off->request_tls) != 0;
    u64 url = ps_read_u64(req + off->request_url);
    if (url) {
      r->path_len = ps_read_go_str_at(r->path, sizeof(r->path), url + off->url_path);
      r->scheme_len = ps_read_go_str_at(r->scheme, sizeof(r->scheme), url + off->url_scheme);
    }
  }

  /* Method sits at offset 0, so a ctx offset of 0 means unknown. The interface's data word is the *cancelCtx
   * (or whatever the server made) that r.Context() returns and every context derived from it points back to.
   * Noted in the in-flight entry (before it is copied into the map) for RET to unregister. */
  if (off->request_ctx) {
    inf->ctx = ps_read_u64(req + off->request_ctx + 8);
    ps_ctx_span_set(inf->ctx, &sc);
  }

  struct ps_g_key key = ps_g_key_of(g);
  bpf_map_update_elem(&nethttp_server_inflight, &key, inf, BPF_ANY);
  ps_go_ctx_set(g, &sc);
  return 0;
}

SEC("uprobe/net_http_serverHandler_ServeHTTP_ret")
int uprobe_ServeHTTP_ret(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  struct ps_g_key key = ps_g_key_of(g);
  struct server_inflight *inf = bpf_map_lookup_elem(&nethttp_server_inflight, &key);
  if (!inf)
    return 0;
  struct nethttp_server_record *r = &inf->rec;
  r->head.end_ns = bpf_ktime_get_ns();
  struct nethttp_server_offsets *off = ps_target();
  /* What entry registered; Request.ctx itself is not re-read (WithContext copies the request, it does not
   * change this one, but a handler may have replaced the field). */
  ps_ctx_span_clear(inf->ctx);
  if (!off) {
    bpf_map_delete_elem(&nethttp_server_inflight, &key);
    ps_go_ctx_clear(g);
    return 0;
  }
  if (r->head.flags & PS_FLAG_SAMPLED) {
    /* ServeMux sets Request.Pattern while routing, i.e. after entry. */
    r->pattern_len = ps_read_go_str_at(r->pattern, sizeof(r->pattern), inf->req + off->request_pattern);
    /* rw is *http.response only for HTTP/1.x; HTTP/2's writer is another type, so its status is not read. */
    if (r->proto_major == 1 && inf->resp) {
      u64 status = ps_read_u64(inf->resp + off->response_status);
      /* 0: the handler wrote nothing; the server then answers 200 after ServeHTTP returns. */
      r->head.status = status == 0 ? 200 : (u16)status;
    }
    ps_submit(r, sizeof(*r));
  }
  bpf_map_delete_elem(&nethttp_server_inflight, &key);
  ps_go_ctx_clear(g);
  return 0;
}
