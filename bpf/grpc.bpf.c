/* gRPC (google.golang.org/grpc): one SERVER span per RPC a grpc.Server handles and one CLIENT span per RPC a
 * grpc.ClientConn makes, unary and streaming alike, with same-host trace continuation client -> server.
 *
 * Server (all on the goroutine that handles the stream):
 *   (*Server).handleStream(s, t ServerTransport, stream *ServerStream)   RAX=s, RBX/RCX=t, RDI=stream
 *     (a *Stream before grpc 1.69; a *ServerStream embedding *Stream in 1.69-1.76, Stream from 1.77: grpc_stream)
 *     entry: method ("/pkg.Service/Method", the stream's `method`), the connection's addresses (t's data word is the
 *     *http2Server, its `conn` a net.Conn), the parent: a traceparent the client sent (left by operateHeaders,
 *     below), else the client span published for this connection in ps_conn_spans; the span becomes the
 *     goroutine's active context (go_spans) so the handler's own client calls are its children, and the stream's
 *     context.Context (Stream.ctx, which the handler's ctx derives from) is registered as the span's
 *     (ps_ctx_spans) so calls made under the handler's ctx on other goroutines are its children too.
 *     RET: submit. handleStream covers processUnaryRPC and processStreamingRPC, so streams need nothing more.
 *   (*http2Server).writeStatus(t, s *ServerStream, st *status.Status)   RAX=t, RBX=s, RCX=st
 *     (exported, WriteStatus(s *Stream, ...), before grpc 1.69)
 *     the code the server writes: st.s (*spb.Status).Code; a nil st or nil st.s is OK. The span ends here: the
 *     client has its answer from now on (handleStream's RET, later, ends a span whose status was never written).
 *   (*http2Server).operateHeaders(t, ctx, frame *http2.MetaHeadersFrame, handle)   RAX=t, RDI=frame
 *     on the connection's reader goroutine, before the stream is handed to handleStream: scans the decoded header
 *     fields for "traceparent" and keeps it under (pid, transport, stream id) for handleStream.
 *
 * Client:
 *   newClientStream(ctx, desc *StreamDesc, cc *ClientConn, method string, opts...) (ClientStream, error)
 *     RAX/RBX=ctx, RCX=desc, RDI=cc, RSI/R8=method. Invoke (unary) and ClientConn.NewStream both go through it.
 *     entry: the span (parent: the nearest span registered on ctx's chain, else the goroutine's active span:
 *     ps_go_parent in go_context.h), method, cc.authority; kept by goroutine.
 *     RET (RAX/RBX=ClientStream, RCX/RDI=error): an error ends the span here; else it is re-keyed by the returned
 *     *clientStream (the RPC ends later, on whatever goroutine reads its end). Since 1.85 the returned stream is a
 *     *clientStreamWrapper around it.
 *   (*clientStream).finish(cs, err error)   RAX=cs, RBX/RCX=err: the RPC's end (first call only). io.EOF is OK (as
 *     finish itself says); a *status.Error carries its code; any other error is UNKNOWN (as status.Code says).
 *   Same-host linking, exact per stream: many calls share one HTTP/2 connection, and a stream's id is only known
 *   on the connection's writer goroutine. (*http2Client).NewStream (RAX=t, caller's goroutine) reads the
 *   connection's addresses (t.conn); createHeaderFields' RET (same goroutine) keys the call by the array of header
 *   fields it returns; (*loopyWriter).writeHeader (writer goroutine) gets that array with the stream id and
 *   publishes the call's span in grpc_stream_spans under (connection, stream id), before the HEADERS go out. The
 *   server looks up (its connection, the stream's id). Fallback when that path is missing: NewStream also publishes
 *   the span in go_context's ps_conn_spans under the connection alone: the connection's most recently started call
 *   (exact only for calls that do not overlap); the client's end removes it if it is still its own.
 *
 * The error's dynamic type is told by its itab: an error interface's itab lists one method, Error, so the itab of a
 * *status.Error is the one whose Fun[0] is (*status.Error).Error (Go 1.27 no longer names itabs in the symbol
 * table; functions stay named). That address and io.EOF's come per target from the executable's symbol table. */
#include "common.h"
#include "go_context.h"
#include "sampling.h"
#include "nethttp.h"

/* Mirrored by `Offsets` in src/instrumentations/Grpc.ts, checked against this BTF at load. */
struct grpc_offsets {
  /* Where the server's transport.Stream is, from the handleStream/writeStatus argument (grpc_stream below), and its
   * method / id. */
  u64 stream_embed;
  u64 server_stream_stream;
  u64 stream_method;
  u64 stream_id;
  /* internal/status.Status.s, spb.Status.Code, internal/status.Error.s */
  u64 status_s;
  u64 spb_code;
  u64 error_s;
  /* grpc.ClientConn.authority, grpc.StreamDesc.ServerStreams / ClientStreams */
  u64 cc_authority;
  u64 desc_server_streams;
  u64 desc_client_streams;
  /* grpc >= 1.85 returns a *clientStreamWrapper whose embedded ClientStream (an interface) holds the *clientStream:
   * cs_wrapped 1 and the field's offset; 0: the returned data word is the *clientStream. */
  u64 cs_wrapped;
  u64 wrapper_stream;
  /* transport.http2Server.conn / http2Client.conn (net.Conn) */
  u64 server_conn;
  u64 client_conn;
  /* http2.MetaHeadersFrame.HeadersFrame (pointer) -> FrameHeader.StreamID; MetaHeadersFrame.Fields;
   * hpack.HeaderField.Value; 0 in meta_fields: no traceparent lookup */
  u64 meta_headers;
  u64 frame_stream_id;
  u64 meta_fields;
  u64 field_value;
  /* Runtime addresses: the method (*status.Error).Error, and the io.EOF variable (an error interface); where an
   * itab keeps its first method (internal/abi.ITab.Fun). */
  u64 status_error_fn;
  u64 io_eof;
  /* errors.(*errorString).Error: without io.EOF's address (a stripped binary has no data symbols), a clean end is
   * told by its value, errors.New("EOF"): an *errorString whose text is "EOF". */
  u64 error_string_fn;
  u64 itab_fun;
  /* Stream.ctx's data word (offset of the interface + 8, never 0; 0: unknown): the stream's context, which the
   * handler's ctx derives from, registered as the server span's (ps_ctx_spans). */
  u64 stream_ctx_data;
  struct ps_tcp_offsets tcp;
};

PS_TARGETS(struct grpc_offsets);

#define PS_GRPC_SERVER 1
#define PS_GRPC_CLIENT 2

#define PS_GRPC_UNKNOWN 2

/* Mirrored by `Record` in src/instrumentations/Grpc.ts, checked against this BTF at load. head.status holds the gRPC
 * status code. */
struct grpc_record {
  struct ps_http_head head;
  /* PS_GRPC_SERVER or PS_GRPC_CLIENT */
  u8 kind;
  /* head.status is known (server: writeStatus ran; client: the RPC ended) */
  u8 status_known;
  /* the parent came from ps_conn_spans (server), the span was published there (client) */
  u8 linked;
  /* the desc says the server or the client streams */
  u8 streaming;
  /* local and peer addresses are known */
  u8 has_addrs;
  u8 method_len;
  u8 authority_len;
  /* server: the parent was matched by connection and stream id (exact), not as the connection's latest call */
  u8 link_exact;
  u16 local_port;
  u16 peer_port;
  /* client: the method's length when its bytes could not be read here (then at method_at) */
  u8 method_cold_len;
  /* client: where an itab keeps its first method (internal/abi.ITab.Fun), with code_itab_at */
  u8 code_fun_off;
  u8 _pad2[2];
  u8 local_ip[16];
  u8 peer_ip[16];
  /* client: the method name (a constant of the generated code) when it is on a page not mapped yet, else 0 */
  u64 method_at;
  /* client: the error whose type could not be told here (its itab, or io.EOF's text, on a page not mapped yet; else
   * 0): its itab and data word, and the methods that tell a *status.Error (head.status then holds its code) and,
   * on a stripped binary, an errors.New error (io.EOF when its text is "EOF") */
  u64 code_itab_at;
  u64 code_data;
  u64 code_status_fn;
  u64 code_string_fn;
  char method[128];
  char authority[64];
};
PS_RECORD(grpc_record);

/* A server RPC in flight (by goroutine) or a client RPC (by goroutine until newClientStream returns, then by
 * clientStream). */
struct grpc_inflight {
  struct grpc_record rec;
  u64 stream;
  struct ps_conn_key conn;
  /* server: the stream's context registered in ps_ctx_spans until RET (0: none) */
  u64 ctx;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct ps_g_key);
  __type(value, struct grpc_inflight);
} grpc_server_inflight SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct ps_g_key);
  __type(value, struct grpc_inflight);
} grpc_client_starting SEC(".maps");

/* Key: (pid, *clientStream) in the ps_g_key shape. LRU: a stream its owner abandons unfinished ages out. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct ps_g_key);
  __type(value, struct grpc_inflight);
} grpc_client_streams SEC(".maps");

/* (pid, server transport, stream id) -> the traceparent its HEADERS carried. */
struct grpc_stream_key {
  u32 tgid;
  u32 stream_id;
  u64 transport;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct grpc_stream_key);
  __type(value, struct ps_span_ctx);
} grpc_incoming_tp SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct grpc_inflight);
} grpc_scratch SEC(".maps");

/* A client call's header fields on their way to the connection's writer: (pid, the []hpack.HeaderField's array)
 * -> the call's span and connection. */
struct grpc_hf_key {
  u32 tgid;
  u32 _pad;
  u64 hf;
};

struct grpc_pending_stream {
  struct ps_conn_key conn;
  struct ps_span_ctx sc;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct grpc_hf_key);
  __type(value, struct grpc_pending_stream);
} grpc_pending_hf SEC(".maps");

/* (connection, stream id) -> the client span of that stream. No pid: it is where the client and the server process
 * meet (one object serves both). The server consumes the entry; one no server takes ages out (LRU). */
struct grpc_conn_stream {
  struct ps_conn_key conn;
  u32 stream_id;
  u32 _pad;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 8192);
  __type(key, struct grpc_conn_stream);
  __type(value, struct ps_span_ctx);
} grpc_stream_spans SEC(".maps");

static __always_inline struct grpc_inflight *grpc_fresh(void) {
  u32 zero = 0;
  struct grpc_inflight *inf = bpf_map_lookup_elem(&grpc_scratch, &zero);
  if (inf)
    __builtin_memset(inf, 0, sizeof(*inf));
  return inf;
}

/* The span's ids and sampling decision, continuing `parent` when given. */
static __always_inline void grpc_span_ids(struct grpc_record *r, const struct ps_span_ctx *parent, u8 parent_kind,
                                          struct ps_span_ctx *sc) {
  ps_span_begin(parent, sc);
  ps_http_head_ids(&r->head, sc, parent, parent_kind);
}

/* The addresses of the connection held by the net.Conn at `conn_field`. 0 on success. */
static __always_inline int grpc_conn_addrs(u64 conn_field, const struct ps_tcp_offsets *tcp, struct ps_addr *local,
                                           struct ps_addr *remote) {
  struct go_iface conn = {};
  if (bpf_probe_read_user(&conn, sizeof(conn), (const void *)conn_field) != 0)
    return -1;
  return ps_tcp_conn_addrs(conn.data, tcp, local, remote);
}

static __always_inline void grpc_set_addrs(struct grpc_record *r, const struct ps_addr *local,
                                           const struct ps_addr *peer) {
  __builtin_memcpy(r->local_ip, local->ip, 16);
  __builtin_memcpy(r->peer_ip, peer->ip, 16);
  r->local_port = local->port;
  r->peer_port = peer->port;
  r->has_addrs = 1;
}

/* ---- Server ---- */

/* stream_embed: how the server's stream argument holds its transport.Stream. */
#define GRPC_STREAM_DIRECT 0  /* grpc < 1.69: the argument is the *Stream */
#define GRPC_STREAM_POINTER 1 /* 1.69-1.76: *ServerStream embeds *Stream */
#define GRPC_STREAM_VALUE 2   /* >= 1.77: *ServerStream embeds Stream */

static __always_inline u64 grpc_stream(u64 arg, const struct grpc_offsets *off) {
  if (off->stream_embed == GRPC_STREAM_POINTER)
    return ps_read_u64(arg + off->server_stream_stream);
  return arg + off->server_stream_stream;
}

SEC("uprobe/grpc_Server_handleStream")
int uprobe_handleStream(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  u64 transport = GO_ARG3(ctx);
  u64 stream = GO_ARG4(ctx);
  if (stream == 0)
    return 0;
  struct grpc_offsets *off = ps_target();
  if (!off)
    return 0;
  struct grpc_inflight *inf = grpc_fresh();
  if (!inf)
    return 0;
  struct grpc_record *r = &inf->rec;
  inf->stream = stream;
  r->head.start_ns = bpf_ktime_get_ns();
  r->head.pid = ps_tgid();
  r->kind = PS_GRPC_SERVER;
  u64 s = grpc_stream(stream, off);
  r->method_len = ps_read_go_str_at(r->method, sizeof(r->method), s + off->stream_method);

  struct ps_span_ctx parent = {};
  bool has_parent = false;
  u32 id = 0;
  if (bpf_probe_read_user(&id, sizeof(id), (const void *)(s + off->stream_id)) == 0) {
    struct grpc_stream_key sk = {.tgid = r->head.pid, .stream_id = id, .transport = transport};
    struct ps_span_ctx *tp = bpf_map_lookup_elem(&grpc_incoming_tp, &sk);
    if (tp) {
      parent = *tp;
      has_parent = true;
      bpf_map_delete_elem(&grpc_incoming_tp, &sk);
    }
  }
  struct ps_addr local = {}, peer = {};
  if (transport && off->tcp.enabled && grpc_conn_addrs(transport + off->server_conn, &off->tcp, &local, &peer) == 0) {
    grpc_set_addrs(r, &local, &peer);
    /* Exact: the client span whose HEADERS opened this stream; else the connection's latest client call. A
     * traceparent from the metadata wins, but the stream's entry is consumed either way. */
    struct grpc_conn_stream cs = {};
    ps_conn_key_of(&cs.conn, &peer, &local);
    cs.stream_id = id;
    struct ps_span_ctx *sc = id ? bpf_map_lookup_elem(&grpc_stream_spans, &cs) : NULL;
    if (sc) {
      if (!has_parent) {
        parent = *sc;
        has_parent = true;
        r->linked = 1;
        r->link_exact = 1;
      }
      bpf_map_delete_elem(&grpc_stream_spans, &cs);
    } else if (!has_parent) {
      sc = bpf_map_lookup_elem(&ps_conn_spans, &cs.conn);
      if (sc) {
        parent = *sc;
        has_parent = true;
        r->linked = 1;
      }
    }
  }
  struct ps_span_ctx sc = {};
  grpc_span_ids(r, has_parent ? &parent : NULL, PS_PARENT_REMOTE, &sc);

  /* The handler's ctx is the stream's with values (the server, the transport stream, ...) and maybe a deadline
   * added: registering the stream's makes client calls under the handler's ctx its children on any goroutine. */
  if (off->stream_ctx_data) {
    inf->ctx = ps_read_u64(s + off->stream_ctx_data);
    ps_ctx_span_set(inf->ctx, &sc);
  }

  struct ps_g_key key = ps_g_key_of(g);
  bpf_map_update_elem(&grpc_server_inflight, &key, inf, BPF_ANY);
  ps_go_ctx_set(g, &sc);
  return 0;
}

SEC("uprobe/grpc_Server_handleStream_ret")
int uprobe_handleStream_ret(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  struct ps_g_key key = ps_g_key_of(g);
  struct grpc_inflight *inf = bpf_map_lookup_elem(&grpc_server_inflight, &key);
  if (!inf)
    return 0;
  /* Ended when its status was written (what the client waits for), else now. */
  if (!inf->rec.status_known)
    inf->rec.head.end_ns = bpf_ktime_get_ns();
  if (inf->rec.head.flags & PS_FLAG_SAMPLED)
    ps_submit(&inf->rec, sizeof(inf->rec));
  /* What entry registered (handleStream replaces stream.ctx with a derived one while it runs). */
  ps_ctx_span_clear(inf->ctx);
  bpf_map_delete_elem(&grpc_server_inflight, &key);
  ps_go_ctx_clear(g);
  return 0;
}

/* The code of a *status.Status (internal/status), OK for nil. */
static __always_inline u16 grpc_status_code(u64 st, const struct grpc_offsets *off) {
  if (st == 0)
    return 0;
  u64 p = ps_read_u64(st + off->status_s);
  if (p == 0)
    return 0;
  s32 code = 0;
  if (bpf_probe_read_user(&code, sizeof(code), (const void *)(p + off->spb_code)) != 0)
    return PS_GRPC_UNKNOWN;
  return (u16)code;
}

SEC("uprobe/grpc_http2Server_writeStatus")
int uprobe_writeStatus(struct pt_regs *ctx) {
  u64 stream = GO_ARG2(ctx);
  u64 st = GO_ARG3(ctx);
  struct ps_g_key key = ps_g_key_of(GO_G(ctx));
  struct grpc_inflight *inf = bpf_map_lookup_elem(&grpc_server_inflight, &key);
  /* The goroutine's RPC only: writeStatus may also run elsewhere (e.g. an unknown method answered before
   * handleStream's span, or a transport closing streams). The first status written is the one the client sees. */
  if (!inf || inf->stream != stream || inf->rec.status_known)
    return 0;
  struct grpc_offsets *off = ps_target();
  if (!off)
    return 0;
  inf->rec.head.status = grpc_status_code(st, off);
  inf->rec.status_known = 1;
  /* The server's span ends here, not when handleStream returns: the client may have its answer, and have ended its
   * own span, before this goroutine is done cleaning up; a span ended then would outlast its parent. */
  inf->rec.head.end_ns = bpf_ktime_get_ns();
  return 0;
}

/* Bound of the header fields scanned for traceparent (gRPC requests carry ~8 plus the caller's metadata). */
#define GRPC_MAX_FIELDS 32
#define GRPC_FIELD_BYTES 40

struct tp_scan {
  u64 fields;
  u64 n;
  u64 value_off;
  struct ps_span_ctx out;
  int found;
};

static long grpc_tp_step(u32 i, void *data) {
  struct tp_scan *s = data;
  if (i >= s->n)
    return 1;
  u64 f = s->fields + (u64)i * GRPC_FIELD_BYTES;
  struct go_string name = {};
  if (bpf_probe_read_user(&name, sizeof(name), (const void *)f) != 0 || name.len != 11)
    return 0;
  u8 buf[11] = {};
  if (bpf_probe_read_user(buf, sizeof(buf), (const void *)name.ptr) != 0)
    return 0;
  /* HTTP/2 header names are lower case. */
  const char want[] = "traceparent";
  for (int j = 0; j < 11; j++)
    if (buf[j] != (u8)want[j])
      return 0;
  struct go_string v = {};
  if (bpf_probe_read_user(&v, sizeof(v), (const void *)(f + s->value_off)) != 0 || v.len < PS_TRACEPARENT_LEN)
    return 1;
  u8 tp[PS_TRACEPARENT_LEN + 1] = {};
  if (bpf_probe_read_user(tp, PS_TRACEPARENT_LEN, (const void *)v.ptr) != 0)
    return 1;
  if (ps_traceparent_parse(tp, &s->out) == 0)
    s->found = 1;
  return 1;
}

SEC("uprobe/grpc_http2Server_operateHeaders")
int uprobe_operateHeaders(struct pt_regs *ctx) {
  u64 transport = GO_ARG1(ctx);
  u64 frame = GO_ARG4(ctx);
  struct grpc_offsets *off = ps_target();
  if (!off || off->meta_fields == 0 || frame == 0)
    return 0;
  struct go_slice fields = {};
  if (bpf_probe_read_user(&fields, sizeof(fields), (const void *)(frame + off->meta_fields)) != 0)
    return 0;
  struct tp_scan s = {};
  s.fields = fields.ptr;
  s.n = fields.len;
  s.value_off = off->field_value;
  if (s.fields == 0 || s.n == 0)
    return 0;
  bpf_loop(GRPC_MAX_FIELDS, grpc_tp_step, &s, 0);
  if (!s.found)
    return 0;
  u64 hf = ps_read_u64(frame + off->meta_headers);
  u32 id = 0;
  if (hf == 0 || bpf_probe_read_user(&id, sizeof(id), (const void *)(hf + off->frame_stream_id)) != 0)
    return 0;
  struct grpc_stream_key sk = {.tgid = ps_tgid(), .stream_id = id, .transport = transport};
  bpf_map_update_elem(&grpc_incoming_tp, &sk, &s.out, BPF_ANY);
  return 0;
}

/* ---- Client ---- */

SEC("uprobe/grpc_newClientStream")
int uprobe_newClientStream(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  u64 call_ctx = GO_ARG2(ctx);
  u64 desc = GO_ARG3(ctx);
  u64 cc = GO_ARG4(ctx);
  u64 method_ptr = GO_ARG5(ctx);
  u64 method_len = GO_ARG6(ctx);
  struct grpc_offsets *off = ps_target();
  if (!off)
    return 0;
  struct grpc_inflight *inf = grpc_fresh();
  if (!inf)
    return 0;
  struct grpc_record *r = &inf->rec;
  r->head.start_ns = bpf_ktime_get_ns();
  r->head.pid = ps_tgid();
  r->kind = PS_GRPC_CLIENT;
  r->method_len = ps_read_go_str_or_at(r->method, sizeof(r->method), method_ptr, method_len, &r->method_at);
  if (r->method_at)
    r->method_cold_len = method_len > sizeof(r->method) ? sizeof(r->method) : method_len;
  if (cc)
    r->authority_len = ps_read_go_str_at(r->authority, sizeof(r->authority), cc + off->cc_authority);
  if (desc) {
    u8 ss = 0, cs = 0;
    bpf_probe_read_user(&ss, 1, (const void *)(desc + off->desc_server_streams));
    bpf_probe_read_user(&cs, 1, (const void *)(desc + off->desc_client_streams));
    r->streaming = ss || cs;
  }
  /* The parent: the nearest span registered on ctx's chain (a server span whose context this call was made under, on
   * whatever goroutine), else the goroutine's active span. */
  struct ps_span_ctx parent = {};
  bool has_parent = ps_go_parent(g, call_ctx, &parent) == 0;
  struct ps_span_ctx sc = {};
  grpc_span_ids(r, has_parent ? &parent : NULL, PS_PARENT_LOCAL, &sc);
  struct ps_g_key key = ps_g_key_of(g);
  bpf_map_update_elem(&grpc_client_starting, &key, inf, BPF_ANY);
  return 0;
}

/* Remove the connection's entry if it is still this span's (a later call on the connection may have replaced it). */
static __always_inline void grpc_unpublish(struct grpc_inflight *inf) {
  if (!inf->rec.linked)
    return;
  struct ps_span_ctx *cur = bpf_map_lookup_elem(&ps_conn_spans, &inf->conn);
  if (!cur)
    return;
  u64 a, b;
  __builtin_memcpy(&a, cur->span_id, 8);
  __builtin_memcpy(&b, inf->rec.head.span_id, 8);
  if (a == b)
    bpf_map_delete_elem(&ps_conn_spans, &inf->conn);
}

/* The gRPC code of an error interface (tab, data): OK for nil and io.EOF, the code of a *status.Error, else
 * UNKNOWN. The type is told by the itab's first method, on a page that may not be mapped yet (itabs are read-only
 * data), as may be io.EOF's text on a stripped binary: when either cannot be read, the code is the one a
 * *status.Error would have, and the record keeps what user space needs to check it (grpc_record.code_*). */
static __always_inline u16 grpc_error_code(struct grpc_record *r, u64 tab, u64 data, const struct grpc_offsets *off) {
  if (tab == 0)
    return 0;
  u64 fun = 0;
  bool cold = bpf_probe_read_user(&fun, sizeof(fun), (const void *)(tab + off->itab_fun)) != 0;
  if (off->io_eof) {
    struct go_iface eof = {};
    if (bpf_probe_read_user(&eof, sizeof(eof), (const void *)off->io_eof) == 0 && eof.tab == tab &&
        eof.data == data)
      return 0;
  } else if (off->error_string_fn && data && (cold || fun == off->error_string_fn)) {
    /* errorString{s string}: s's pointer and length at the start. */
    struct go_string s = {};
    char text[3] = {};
    if (bpf_probe_read_user(&s, sizeof(s), (const void *)data) == 0 && s.len == 3) {
      if (bpf_probe_read_user(text, sizeof(text), (const void *)s.ptr) != 0)
        cold = true;
      else if (!cold && text[0] == 'E' && text[1] == 'O' && text[2] == 'F')
        return 0;
    }
  }
  if (cold) {
    r->code_itab_at = tab;
    r->code_data = data;
    r->code_status_fn = off->status_error_fn;
    r->code_string_fn = off->io_eof ? 0 : off->error_string_fn;
    r->code_fun_off = (u8)off->itab_fun;
  } else if (off->status_error_fn == 0 || data == 0 || fun != off->status_error_fn) {
    return PS_GRPC_UNKNOWN;
  }
  return data == 0 ? PS_GRPC_UNKNOWN : grpc_status_code(ps_read_u64(data + off->error_s), off);
}

static __always_inline void grpc_client_end(struct grpc_inflight *inf, u64 err_tab, u64 err_data,
                                            const struct grpc_offsets *off) {
  struct grpc_record *r = &inf->rec;
  r->head.end_ns = bpf_ktime_get_ns();
  r->head.status = off ? grpc_error_code(r, err_tab, err_data, off) : PS_GRPC_UNKNOWN;
  r->status_known = 1;
  grpc_unpublish(inf);
  if (r->head.flags & PS_FLAG_SAMPLED)
    ps_submit(r, sizeof(*r));
}

SEC("uprobe/grpc_newClientStream_ret")
int uprobe_newClientStream_ret(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  u64 cs = GO_ARG2(ctx);
  u64 err_tab = GO_ARG3(ctx);
  u64 err_data = GO_ARG4(ctx);
  struct ps_g_key key = ps_g_key_of(g);
  struct grpc_inflight *inf = bpf_map_lookup_elem(&grpc_client_starting, &key);
  if (!inf)
    return 0;
  struct grpc_offsets *off = ps_target();
  if (err_tab != 0 || cs == 0 || !off) {
    grpc_client_end(inf, err_tab, err_data, off);
  } else {
    if (off->cs_wrapped)
      cs = ps_read_u64(cs + off->wrapper_stream + 8);
    struct ps_g_key sk = {.tgid = key.tgid, ._pad = 0, .g = cs};
    bpf_map_update_elem(&grpc_client_streams, &sk, inf, BPF_ANY);
  }
  bpf_map_delete_elem(&grpc_client_starting, &key);
  return 0;
}

SEC("uprobe/grpc_clientStream_finish")
int uprobe_clientStream_finish(struct pt_regs *ctx) {
  u64 cs = GO_ARG1(ctx);
  u64 err_tab = GO_ARG2(ctx);
  u64 err_data = GO_ARG3(ctx);
  struct ps_g_key sk = {.tgid = ps_tgid(), ._pad = 0, .g = cs};
  struct grpc_inflight *inf = bpf_map_lookup_elem(&grpc_client_streams, &sk);
  if (!inf)
    return 0;
  struct grpc_offsets *off = ps_target();
  grpc_client_end(inf, err_tab, err_data, off);
  bpf_map_delete_elem(&grpc_client_streams, &sk);
  return 0;
}

SEC("uprobe/grpc_http2Client_NewStream")
int uprobe_http2Client_NewStream(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  u64 t = GO_ARG1(ctx);
  struct ps_g_key key = ps_g_key_of(g);
  struct grpc_inflight *inf = bpf_map_lookup_elem(&grpc_client_starting, &key);
  if (!inf || t == 0)
    return 0;
  struct grpc_offsets *off = ps_target();
  if (!off || !off->tcp.enabled)
    return 0;
  struct ps_addr local = {}, remote = {};
  if (grpc_conn_addrs(t + off->client_conn, &off->tcp, &local, &remote) != 0)
    return 0;
  /* A retry on another transport: the first connection's entry is no longer this call's. */
  grpc_unpublish(inf);
  grpc_set_addrs(&inf->rec, &local, &remote);
  struct ps_span_ctx sc = {};
  __builtin_memcpy(sc.trace_id, inf->rec.head.trace_id, 16);
  __builtin_memcpy(sc.span_id, inf->rec.head.span_id, 8);
  sc.flags = inf->rec.head.flags;
  ps_conn_key_of(&inf->conn, &local, &remote);
  bpf_map_update_elem(&ps_conn_spans, &inf->conn, &sc, BPF_ANY);
  inf->rec.linked = 1;
  return 0;
}

/* (*http2Client).createHeaderFields(ctx, callHdr) ([]hpack.HeaderField, error): RET, RAX = the fields' array. On the
 * caller's goroutine, inside NewStream (so after uprobe_http2Client_NewStream published the call on its connection):
 * remembers the array, which NewStream hands unchanged to the connection's writer. */
SEC("uprobe/grpc_http2Client_createHeaderFields_ret")
int uprobe_createHeaderFields_ret(struct pt_regs *ctx) {
  u64 hf = GO_ARG1(ctx);
  struct ps_g_key key = ps_g_key_of(GO_G(ctx));
  struct grpc_inflight *inf = bpf_map_lookup_elem(&grpc_client_starting, &key);
  if (!inf || !inf->rec.linked || hf == 0)
    return 0;
  struct grpc_pending_stream p = {};
  p.conn = inf->conn;
  __builtin_memcpy(p.sc.trace_id, inf->rec.head.trace_id, 16);
  __builtin_memcpy(p.sc.span_id, inf->rec.head.span_id, 8);
  p.sc.flags = inf->rec.head.flags;
  struct grpc_hf_key hk = {.tgid = key.tgid, ._pad = 0, .hf = hf};
  bpf_map_update_elem(&grpc_pending_hf, &hk, &p, BPF_ANY);
  return 0;
}

/* (*loopyWriter).writeHeader(l, streamID uint32, endStream bool, hf []hpack.HeaderField, onWrite func()):
 * RAX=l, RBX=streamID, RDI=hf's array. On the connection's writer goroutine, when the stream has its id and its
 * HEADERS are written: publishes the call's span under (connection, stream id) for the server on this host. The
 * server's own responses come through here too and find nothing. */
SEC("uprobe/grpc_loopyWriter_writeHeader")
int uprobe_loopy_writeHeader(struct pt_regs *ctx) {
  u32 id = (u32)GO_ARG2(ctx);
  struct grpc_hf_key hk = {.tgid = ps_tgid(), ._pad = 0, .hf = GO_ARG4(ctx)};
  struct grpc_pending_stream *p = bpf_map_lookup_elem(&grpc_pending_hf, &hk);
  if (!p)
    return 0;
  struct grpc_conn_stream cs = {};
  cs.conn = p->conn;
  cs.stream_id = id;
  struct ps_span_ctx sc = p->sc;
  bpf_map_delete_elem(&grpc_pending_hf, &hk);
  bpf_map_update_elem(&grpc_stream_spans, &cs, &sc, BPF_ANY);
  return 0;
}
