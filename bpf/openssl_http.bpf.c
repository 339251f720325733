/* HTTP/1.x over TLS through OpenSSL: one record per request/response exchange, from the plaintext that crosses
 * libssl.so.3's SSL_write / SSL_read (and their _ex variants) in any dynamically linked program.
 *
 * Why uprobes on libssl: there the bytes are still (or already) plaintext, whatever the language of the program.
 * The links may be shared by every process that maps the file (an executable selection: one set per libssl file), so
 * every program checks first that its process is a target (ps_target()).
 *
 * Per call: the entry uprobe keeps (SSL*, buf, out-pointer, time) per thread; the return uprobe learns how many bytes
 * really went through (the return value, or *written / *readbytes for the _ex variants) and hands that chunk to
 * on_data(). Writes are handled at return too, so a write retried after SSL_ERROR_WANT_WRITE counts once.
 *
 * Per connection (tgid, SSL*), on_data() tracks one exchange at a time:
 *  - idle: a chunk that starts like a request line ("METHOD SP target") opens an exchange. The direction says the
 *    connection's side, remembered for its life: the process that writes the request is the client, the one that
 *    reads it the server. The span starts there (client: SSL_write's entry; server: SSL_read's return).
 *  - in an exchange: more chunks in the request's direction are appended to the captured request (a head split over
 *    calls, then the body) up to OSSL_REQ_CAP bytes. The first chunk in the other direction that starts with "HTTP/"
 *    and is not an interim 1xx (101 is final; an interim answer and the final one in one call are told apart) is the
 *    response: its first OSSL_RESP_CAP bytes (the status line) are kept, the span ends (client: SSL_read's return;
 *    server: SSL_write's entry), ids are made, sampling is decided and the record is submitted. A new request after
 *    an answer this probe did not recognise gives the old exchange up, so a connection never stays stuck.
 * A server continues a valid `traceparent` found in the captured request head; client spans are roots.
 *
 * Parsing beyond "does this look like a request line / a status line" is user space's (src/instrumentations/
 * internal/Http1.ts): the record carries raw bounded bytes, and only the attributes the HTTP semantic conventions
 * name are exported from them. */
/* The go_context maps come with the header but this probe shares nothing with Go code: keep them tiny. */
#define PS_GO_CTX_ENTRIES 1
#define PS_CONN_SPANS_ENTRIES 1
#include "common.h"
#include "go_context.h"
#include "sampling.h"

/* Bytes of the request (head first, then body) and of the response (its status line) a record carries. Powers of
 * two: the verifier bounds copies by masking. */
#define OSSL_REQ_CAP 512
#define OSSL_RESP_CAP 64
/* Bytes of a chunk looked at to tell a request line or a status line. */
#define OSSL_PEEK 16

#define OSSL_SIDE_CLIENT 1
#define OSSL_SIDE_SERVER 2

#define OSSL_DIR_WRITE 0
#define OSSL_DIR_READ 1

/* The per-target value: nothing to configure per process, the entry only marks the process as a target. Mirrored by
 * `Target` in src/instrumentations/OpenSslHttp.ts. */
struct openssl_http_target {
  u8 enabled;
};
PS_TARGETS(struct openssl_http_target);

/* One exchange. Mirrored by `Record` in src/instrumentations/OpenSslHttp.ts, checked against this BTF at load. */
struct openssl_http_record {
  u64 start_ns;
  u64 end_ns;
  u8 trace_id[16];
  u8 span_id[8];
  u8 parent_span_id[8];
  u32 pid;
  /* The thread that saw the request's first byte. */
  u32 tid;
  /* Bytes of the request seen before the response began (saturating); request_len of them are captured. */
  u32 request_seen;
  u16 request_len;
  u16 response_len;
  u8 flags;
  /* OSSL_SIDE_CLIENT or OSSL_SIDE_SERVER. */
  u8 side;
  /* 0: a root span; OSSL_PARENT_REMOTE (2): the parent came from a traceparent header (`Http.Parent` in TS). */
  u8 parent;
  u8 _pad[5];
  char request[OSSL_REQ_CAP];
  char response[OSSL_RESP_CAP];
};
PS_RECORD(openssl_http_record);

#define OSSL_PARENT_REMOTE 2

/* The in-flight exchange. `slack` exists for the verifier: an append at offset < OSSL_REQ_CAP of at most
 * OSSL_REQ_CAP bytes must provably stay inside the value (the code never writes past request[OSSL_REQ_CAP]); it is
 * also the scratch where an interim answer is searched for the final one. */
struct ossl_exchange {
  struct openssl_http_record rec;
  /* Something came back the other way since the request began. */
  u8 answered;
  u8 slack[OSSL_REQ_CAP];
};

/* A connection of a process: an SSL* is only unique within its process. */
struct ossl_conn_key {
  u32 tgid;
  u32 _pad;
  u64 ssl;
};

/* Connection -> its side, once known. LRU: connections whose SSL_free was not seen (a process killed) age out. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, struct ossl_conn_key);
  __type(value, u8);
} ossl_sides SEC(".maps");

/* Connection -> the exchange waiting for its response. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 1024);
  __type(key, struct ossl_conn_key);
  __type(value, struct ossl_exchange);
} ossl_exchanges SEC(".maps");

/* An exchange is too large for the 512-byte stack: a new one is built in per-CPU scratch. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct ossl_exchange);
} ossl_scratch SEC(".maps");

/* A call in progress on a thread: its arguments, kept from entry for the return uprobe. */
struct ossl_call {
  u64 ssl;
  u64 buf;
  /* size_t *written / *readbytes of the _ex variants; 0 for SSL_write / SSL_read. */
  u64 out;
  u64 entry_ns;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, u64);
  __type(value, struct ossl_call);
} ossl_calls SEC(".maps");

/* ---- Recognising the start of a request and of a response ---- */

/* "METHOD SP target": 3 to 12 upper-case letters, a space, then '/' (origin form), '*' (OPTIONS *), a letter or a
 * digit (absolute form, or CONNECT's authority). HTTP/2's connection preface ("PRI * HTTP/2.0") is not a request. */
static __always_inline bool ossl_is_request(const u8 *b, u32 n) {
  u32 i = 0;
  for (; i < 13; i++) {
    if (i >= n || b[i] < 'A' || b[i] > 'Z')
      break;
  }
  if (i < 3 || i > 12 || i + 1 >= n || b[i] != ' ')
    return false;
  u8 t = b[(i + 1) & (OSSL_PEEK - 1)];
  if (!(t == '/' || t == '*' || (t >= 'a' && t <= 'z') || (t >= 'A' && t <= 'Z') || (t >= '0' && t <= '9')))
    return false;
  return !(i == 3 && b[0] == 'P' && b[1] == 'R' && b[2] == 'I');
}

#define OSSL_NOT_STATUS 0
#define OSSL_INTERIM 1
#define OSSL_FINAL 2

/* What "HTTP/x.y NNN" at b is: a final response, or an interim 1xx answer (100 Continue, 103 Early Hints) that the
 * real one follows — except 101 Switching Protocols, final: after it the connection is no longer HTTP/1. */
static __always_inline int ossl_status_kind(const u8 *b, u32 n) {
  if (n < 12 || b[0] != 'H' || b[1] != 'T' || b[2] != 'T' || b[3] != 'P' || b[4] != '/')
    return OSSL_NOT_STATUS;
  if (b[9] == '1' && !(b[10] == '0' && b[11] == '1'))
    return OSSL_INTERIM;
  return OSSL_FINAL;
}

/* Bytes of a chunk searched for the final status line after an interim answer. */
#define OSSL_INTERIM_SCAN 256

struct ossl_interim_scan {
  const char *tmp;
  u32 n;
  u32 found;
};

/* Per position: the interim head's blank line followed by "HTTP/" ends the search. */
static long ossl_interim_step(u64 i, void *data) {
  struct ossl_interim_scan *s = data;
  if (i < 12)
    return 0;
  if (i + 9 > s->n || i >= OSSL_INTERIM_SCAN)
    return 1;
  const char *p = &s->tmp[i & (OSSL_INTERIM_SCAN - 1)];
  if (p[0] == '\r' && p[1] == '\n' && p[2] == '\r' && p[3] == '\n' && p[4] == 'H' && p[5] == 'T' && p[6] == 'T' &&
      p[7] == 'P' && p[8] == '/') {
    s->found = (u32)i + 4;
    return 1;
  }
  return 0;
}

/* Where the final status line starts when one call carries an interim answer and then the final one ("HTTP/1.1 100
 * Continue\r\n\r\nHTTP/1.1 201 Created..."): the offset just past the interim head's blank line, looked for in the
 * chunk's first OSSL_INTERIM_SCAN bytes (with bpf_loop: a plain loop this long multiplies verification time); 0 when
 * it is not there. `tmp` is scratch of at least OSSL_INTERIM_SCAN + 8 bytes. */
static __always_inline u32 ossl_after_interim(char *tmp, u64 buf, u32 len) {
  u64 n = len < OSSL_INTERIM_SCAN ? len : OSSL_INTERIM_SCAN;
  asm volatile("" : "+r"(n));
  if (n > OSSL_INTERIM_SCAN || bpf_probe_read_user(tmp, n, (const void *)buf) != 0)
    return 0;
  struct ossl_interim_scan s = {.tmp = tmp, .n = (u32)n, .found = 0};
  bpf_loop(OSSL_INTERIM_SCAN, ossl_interim_step, &s, 0);
  return s.found;
}

/* ---- The incoming traceparent, from the captured request head ---- */

struct ossl_scan {
  const struct openssl_http_record *rec;
  u32 value_at;
};

/* Per position of the head: stops at the blank line ending it, or at a "\ntraceparent:" header (any case), noting
 * where its value starts. */
static long ossl_scan_step(u64 i, void *data) {
  struct ossl_scan *s = data;
  const struct openssl_http_record *r = s->rec;
  if (i + 16 >= r->request_len || i + 16 >= OSSL_REQ_CAP)
    return 1;
  const char *p = &r->request[i & (OSSL_REQ_CAP - 1)];
  if (p[0] == '\r' && p[1] == '\n' && p[2] == '\r' && p[3] == '\n')
    return 1;
  if (p[0] != '\n')
    return 0;
  const char name[] = "traceparent:";
#pragma unroll
  for (int k = 0; k < 12; k++) {
    char c = p[1 + k];
    if (c >= 'A' && c <= 'Z')
      c += 'a' - 'A';
    if (c != name[k])
      return 0;
  }
  s->value_at = (u32)i + 13;
  return 1;
}

/* The parent span context of a server exchange; 0 when the head carries a valid traceparent. */
static __always_inline int ossl_traceparent(const struct openssl_http_record *r, struct ps_span_ctx *out) {
  struct ossl_scan s = {.rec = r, .value_at = 0};
  bpf_loop(OSSL_REQ_CAP, ossl_scan_step, &s, 0);
  if (s.value_at == 0)
    return -1;
  u32 at = s.value_at;
  /* Optional whitespace before the value. */
#pragma unroll
  for (int k = 0; k < 4; k++) {
    char c = r->request[at & (OSSL_REQ_CAP - 1)];
    if (c != ' ' && c != '\t')
      break;
    at++;
  }
  if (at + PS_TRACEPARENT_LEN > r->request_len || at >= OSSL_REQ_CAP)
    return -1;
  u8 tp[PS_TRACEPARENT_LEN];
  /* at < OSSL_REQ_CAP: the read stays inside the exchange (response and slack follow the request). */
  if (bpf_probe_read_kernel(tp, sizeof(tp), &r->request[at & (OSSL_REQ_CAP - 1)]) != 0)
    return -1;
  return ps_traceparent_parse(tp, out);
}

/* ---- Exchanges ---- */

/* Append a chunk of the request to the capture, up to OSSL_REQ_CAP bytes in all. */
static __always_inline void ossl_append(struct ossl_exchange *ex, u64 buf, u32 len) {
  struct openssl_http_record *r = &ex->rec;
  u64 seen = (u64)r->request_seen + len;
  r->request_seen = seen > 0xffffffff ? 0xffffffff : (u32)seen;
  u64 off = r->request_len;
  if (off >= OSSL_REQ_CAP)
    return;
  u64 n = OSSL_REQ_CAP - off;
  if (n > len)
    n = len;
  /* 64-bit and behind a barrier, so the register the helper gets is the one checked: the verifier needs n's bound
   * (clang otherwise passes a copy of the unclamped length). */
  asm volatile("" : "+r"(n));
  if (n > OSSL_REQ_CAP)
    return;
  off &= OSSL_REQ_CAP - 1;
  if (bpf_probe_read_user(&r->request[off], n, (const void *)buf) != 0)
    return;
  r->request_len = off + n;
}

/* The response began: finish the exchange's record and submit it when sampled. */
static __always_inline void ossl_finish(struct ossl_exchange *ex, u64 buf, u32 len, u64 at) {
  struct openssl_http_record *r = &ex->rec;
  r->end_ns = at;
  u64 n = len < OSSL_RESP_CAP ? len : OSSL_RESP_CAP;
  asm volatile("" : "+r"(n));
  if (n <= OSSL_RESP_CAP && bpf_probe_read_user(r->response, n, (const void *)buf) == 0)
    r->response_len = n;

  struct ps_span_ctx parent = {};
  bool has_parent = r->side == OSSL_SIDE_SERVER && ossl_traceparent(r, &parent) == 0;
  if (has_parent) {
    __builtin_memcpy(r->parent_span_id, parent.span_id, 8);
    r->parent = OSSL_PARENT_REMOTE;
  }
  struct ps_span_ctx sc = {};
  ps_span_begin(has_parent ? &parent : NULL, &sc);
  __builtin_memcpy(r->trace_id, sc.trace_id, 16);
  __builtin_memcpy(r->span_id, sc.span_id, 8);
  r->flags = sc.flags;
  if (sc.flags & PS_FLAG_SAMPLED)
    ps_submit(r, sizeof(*r));
}

/* `len` plaintext bytes at `buf` went through connection `ssl` in direction `dir`, at time `at`: the entry of a
 * write (the bytes are handed over, none can have reached the peer yet) or the return of a read (they have arrived).
 * So a server span always lies within its client span, whatever the scheduling of the two processes. */
static __always_inline void ossl_on_data(u64 ssl, u64 buf, u32 len, int dir, u64 at) {
  if (len == 0 || buf == 0)
    return;
  u64 pid_tgid = bpf_get_current_pid_tgid();
  struct ossl_conn_key key = {.tgid = pid_tgid >> 32, ._pad = 0, .ssl = ssl};
  u8 peek[OSSL_PEEK] = {};
  u64 np = len < OSSL_PEEK ? len : OSSL_PEEK;
  asm volatile("" : "+r"(np));
  if (np > OSSL_PEEK)
    return;

  if (bpf_probe_read_user(peek, np, (const void *)buf) != 0)
    return;

  struct ossl_exchange *ex = bpf_map_lookup_elem(&ossl_exchanges, &key);
  if (ex) {
    u8 request_dir = ex->rec.side == OSSL_SIDE_CLIENT ? OSSL_DIR_WRITE : OSSL_DIR_READ;
    if (dir != request_dir) {
      /* Anything the other way answers the request, recognised or not (an interim 1xx, an HTTP/0.9 error page). */
      ex->answered = 1;
      int kind = ossl_status_kind(peek, np);
      if (kind == OSSL_INTERIM) {
        u32 skip = ossl_after_interim((char *)ex->slack, buf, len);
        if (skip == 0 || skip >= len)
          return;
        buf += skip;
        len -= skip;
        np = len < OSSL_PEEK ? len : OSSL_PEEK;
        asm volatile("" : "+r"(np));
        if (np > OSSL_PEEK || bpf_probe_read_user(peek, np, (const void *)buf) != 0)
          return;
        kind = ossl_status_kind(peek, np);
      }
      if (kind != OSSL_FINAL)
        return;
      ossl_finish(ex, buf, len, at);
      bpf_map_delete_elem(&ossl_exchanges, &key);
      return;
    }
    /* More of the request (its head split over calls, its body, a pipelined request)... unless it was answered
     * already and a new request starts: the answer was not one this probe recognises (an interim and the final
     * response read in one call, say), and that exchange is given up rather than keeping the connection stuck. */
    if (!ex->answered || !ossl_is_request(peek, np)) {
      ossl_append(ex, buf, len);
      return;
    }
  }

  /* Idle: only a request in this connection's request direction opens an exchange. */
  u8 *known = bpf_map_lookup_elem(&ossl_sides, &key);
  u8 side = dir == OSSL_DIR_WRITE ? OSSL_SIDE_CLIENT : OSSL_SIDE_SERVER;
  if (known && *known != side)
    return;
  if (!ossl_is_request(peek, np))
    return;
  if (!known)
    bpf_map_update_elem(&ossl_sides, &key, &side, BPF_ANY);

  u32 zero = 0;
  struct ossl_exchange *fresh = bpf_map_lookup_elem(&ossl_scratch, &zero);
  if (!fresh)
    return;
  struct openssl_http_record *r = &fresh->rec;
  /* Only the fixed fields: the byte arrays are read up to their lengths. */
  __builtin_memset(r, 0, offsetof(struct openssl_http_record, request));
  r->start_ns = at;
  r->pid = key.tgid;
  r->tid = (u32)pid_tgid;
  r->side = side;
  fresh->answered = 0;
  ossl_append(fresh, buf, len);
  bpf_map_update_elem(&ossl_exchanges, &key, fresh, BPF_ANY);
}

/* ---- The uprobes ---- */

static __always_inline int ossl_enter(u64 ssl, u64 buf, u64 out) {
  if (!ps_target())
    return 0;
  u64 id = bpf_get_current_pid_tgid();
  struct ossl_call call = {.ssl = ssl, .buf = buf, .out = out, .entry_ns = bpf_ktime_get_ns()};
  bpf_map_update_elem(&ossl_calls, &id, &call, BPF_ANY);
  return 0;
}

/* `ex`: the _ex variants return 1/0 and the byte count through `out`; the others return the count (<= 0: none). */
static __always_inline int ossl_leave(struct pt_regs *ctx, int dir, bool ex) {
  u64 id = bpf_get_current_pid_tgid();
  struct ossl_call *c = bpf_map_lookup_elem(&ossl_calls, &id);
  if (!c)
    return 0;
  struct ossl_call call = *c;
  bpf_map_delete_elem(&ossl_calls, &id);
  int rc = (int)PT_REGS_RC(ctx);
  u64 n = 0;
  if (ex) {
    if (rc != 1 || call.out == 0 || bpf_probe_read_user(&n, sizeof(n), (const void *)call.out) != 0)
      return 0;
  } else {
    if (rc <= 0)
      return 0;
    n = (u64)rc;
  }
  u64 at = dir == OSSL_DIR_WRITE ? call.entry_ns : bpf_ktime_get_ns();
  ossl_on_data(call.ssl, call.buf, n > 0x7fffffff ? 0x7fffffff : (u32)n, dir, at);
  return 0;
}

/* int SSL_write(SSL *ssl, const void *buf, int num) */
SEC("uprobe")
int uprobe_SSL_write(struct pt_regs *ctx) {
  return ossl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0);
}

SEC("uretprobe")
int uretprobe_SSL_write(struct pt_regs *ctx) {
  return ossl_leave(ctx, OSSL_DIR_WRITE, false);
}

/* int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written) */
SEC("uprobe")
int uprobe_SSL_write_ex(struct pt_regs *ctx) {
  return ossl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx));
}

SEC("uretprobe")
int uretprobe_SSL_write_ex(struct pt_regs *ctx) {
  return ossl_leave(ctx, OSSL_DIR_WRITE, true);
}

/* int SSL_read(SSL *ssl, void *buf, int num): the plaintext is in buf only when it returns. */
SEC("uprobe")
int uprobe_SSL_read(struct pt_regs *ctx) {
  return ossl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0);
}

SEC("uretprobe")
int uretprobe_SSL_read(struct pt_regs *ctx) {
  return ossl_leave(ctx, OSSL_DIR_READ, false);
}

/* int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe")
int uprobe_SSL_read_ex(struct pt_regs *ctx) {
  return ossl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx));
}

SEC("uretprobe")
int uretprobe_SSL_read_ex(struct pt_regs *ctx) {
  return ossl_leave(ctx, OSSL_DIR_READ, true);
}

/* void SSL_free(SSL *ssl): the connection is gone; a request still waiting for its response is dropped. */
SEC("uprobe")
int uprobe_SSL_free(struct pt_regs *ctx) {
  struct ossl_conn_key key = {.tgid = ps_tgid(), ._pad = 0, .ssl = PT_REGS_PARM1(ctx)};
  bpf_map_delete_elem(&ossl_exchanges, &key);
  bpf_map_delete_elem(&ossl_sides, &key);
  return 0;
}
