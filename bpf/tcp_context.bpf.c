/* tcp_context: carries a request's trace context inside the TCP connection itself, for when the two ends of a
 * connection do not share this host's ps_conn_spans map (another host, another agent) and writing a traceparent
 * into the request's memory is forbidden (kernel lockdown: no bpf_probe_write_user).
 *
 * One sock_ops program on a cgroup v2 directory (every TCP socket created in that cgroup or below runs it):
 *
 *   established (either end)  turn on the header-option callbacks for the connection: write (HDR_OPT_LEN and
 *                             WRITE_HDR_OPT for each segment sent), parse unknown options (PARSE_HDR_OPT for each
 *                             segment received that has an option the kernel does not know), state changes.
 *   sending a data segment    when ps_conn_spans (go_context.h) has a span under this connection seen as a client
 *                             (local = client, remote = server: what a client probe publishes before writing a
 *                             request), reserve and write one experimental option carrying its trace id and span id.
 *   receiving that option     write the span context into ps_conn_spans under the connection seen as a server
 *                             (remote = client, local = server): the key the server probe's same-host lookup
 *                             computes, so a server span on this host gets the remote client span as its parent.
 *   the server answers        (first data segment sent back) or the connection closes: the received entry is
 *                             removed again, so a later request on the connection that carries no option does not
 *                             inherit it.
 *
 * The option (RFC 6994 shared experimental kind 254, 28 bytes):
 *
 *   0       1       2       3       4 ........ 19   20 ........ 27
 *   kind    length  ExID (big-endian)  trace id (16)  span id (8)
 *   254     28      0x5052 | sampled
 *
 * 28 bytes is what is left of the 40 option bytes on a data segment that carries timestamps (12 bytes with their
 * padding), so the W3C flags byte does not fit: the sampled flag is the ExID's low bit (0x5053 sampled, 0x5052
 * not). When less space is left (SACK blocks, MD5), the kernel refuses the reservation and that segment goes
 * without the option (counted in tcp_context_stats). See docs/tcp-context.md. */
#include "common.h"
#include "go_context.h"
#include <bpf/bpf_endian.h>

#define PS_AF_INET 2
#define PS_AF_INET6 10

#define TCP_CONTEXT_KIND 254
#define TCP_CONTEXT_LEN 28
#define TCP_CONTEXT_EXID 0x5052
#define TCP_CONTEXT_EXID_SAMPLED (TCP_CONTEXT_EXID | 1)

#define TCP_CONTEXT_CB_FLAGS                                                                                           \
  (BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG | BPF_SOCK_OPS_PARSE_UNKNOWN_HDR_OPT_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG)

/* The option as it is on the wire. */
struct tcp_context_opt {
  u8 kind;
  u8 len;
  u8 exid[2];
  u8 trace_id[16];
  u8 span_id[8];
} __attribute__((packed));

/* Counters, read by tests and `bpftool map dump`: per CPU, indexed by enum tcp_context_stat. */
enum tcp_context_stat {
  TCP_CONTEXT_WRITTEN = 0,  /* options written on data segments */
  TCP_CONTEXT_RECEIVED = 1, /* options received and published in ps_conn_spans */
  TCP_CONTEXT_NOSPACE = 2,  /* data segments that had a context but no room for the option */
  TCP_CONTEXT_CLEARED = 3,  /* received entries removed (answered or closed) */
  TCP_CONTEXT_STAT_MAX = 4,
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, TCP_CONTEXT_STAT_MAX);
  __type(key, u32);
  __type(value, u64);
} tcp_context_stats SEC(".maps");

/* Connections (server view) whose ps_conn_spans entry this program wrote from a received option -> that span id:
 * what to remove once the server answers or the connection closes, and only if the entry is still that span's. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, PS_CONN_SPANS_ENTRIES);
  __type(key, struct ps_conn_key);
  __type(value, u64);
} tcp_context_received SEC(".maps");

static __always_inline void tcp_context_count(u32 stat) {
  u64 *v = bpf_map_lookup_elem(&tcp_context_stats, &stat);
  if (v)
    *v += 1;
}

/* This end's and the peer's address as go_context.h keys them: IPv4 as v4-mapped IPv6, ports in host order. 0 when
 * the socket is TCP over IPv4 or IPv6. */
static __always_inline int tcp_context_addrs(struct bpf_sock_ops *skops, u8 *local_ip, u16 *local_port, u8 *remote_ip,
                                             u16 *remote_port) {
  u32 family = skops->family;
  if (family == PS_AF_INET) {
    u32 l = skops->local_ip4, r = skops->remote_ip4;
    __builtin_memset(local_ip, 0, 16);
    __builtin_memset(remote_ip, 0, 16);
    local_ip[10] = local_ip[11] = 0xff;
    remote_ip[10] = remote_ip[11] = 0xff;
    __builtin_memcpy(local_ip + 12, &l, 4);
    __builtin_memcpy(remote_ip + 12, &r, 4);
  } else if (family == PS_AF_INET6) {
    u32 l[4], r[4];
    l[0] = skops->local_ip6[0];
    l[1] = skops->local_ip6[1];
    l[2] = skops->local_ip6[2];
    l[3] = skops->local_ip6[3];
    r[0] = skops->remote_ip6[0];
    r[1] = skops->remote_ip6[1];
    r[2] = skops->remote_ip6[2];
    r[3] = skops->remote_ip6[3];
    __builtin_memcpy(local_ip, l, 16);
    __builtin_memcpy(remote_ip, r, 16);
  } else {
    return -1;
  }
  /* local_port is in host order; remote_port is the network-order port in a 32-bit field (the kernel shifts it
   * into the upper half on little-endian), so read as a network-order u32 it is the port. */
  *local_port = (u16)skops->local_port;
  *remote_port = (u16)bpf_ntohl(skops->remote_port);
  return 0;
}

/* The connection's key with this end as the client (sending side) or as the server (receiving side). */
static __always_inline int tcp_context_key(struct bpf_sock_ops *skops, bool local_is_client, struct ps_conn_key *k) {
  u8 lip[16], rip[16];
  u16 lport = 0, rport = 0;
  if (tcp_context_addrs(skops, lip, &lport, rip, &rport) != 0)
    return -1;
  if (local_is_client) {
    __builtin_memcpy(k->client_ip, lip, 16);
    __builtin_memcpy(k->server_ip, rip, 16);
    k->client_port = lport;
    k->server_port = rport;
  } else {
    __builtin_memcpy(k->client_ip, rip, 16);
    __builtin_memcpy(k->server_ip, lip, 16);
    k->client_port = rport;
    k->server_port = lport;
  }
  k->_pad = 0;
  return 0;
}

/* The server end has sent data (its answer) or is closing: drop the entry a received option made, if it is still the
 * one that option made (a client on this host may have published its own under the same connection since). */
static __always_inline void tcp_context_clear_received(struct bpf_sock_ops *skops) {
  struct ps_conn_key k = {};
  if (tcp_context_key(skops, false, &k) != 0)
    return;
  u64 *span = bpf_map_lookup_elem(&tcp_context_received, &k);
  if (!span)
    return;
  u64 mine = *span;
  struct ps_span_ctx *sc = bpf_map_lookup_elem(&ps_conn_spans, &k);
  if (sc) {
    u64 cur;
    __builtin_memcpy(&cur, sc->span_id, 8);
    if (cur == mine)
      bpf_map_delete_elem(&ps_conn_spans, &k);
  }
  bpf_map_delete_elem(&tcp_context_received, &k);
  tcp_context_count(TCP_CONTEXT_CLEARED);
}

/* HDR_OPT_LEN: room for the option on a data segment (or in the MSS computation, which passes no segment) of a
 * connection with a published client span. */
static __always_inline void tcp_context_reserve(struct bpf_sock_ops *skops) {
  bool mss = skops->args[0] == BPF_WRITE_HDR_TCP_CURRENT_MSS;
  if (!mss && skops->skb_len == 0)
    return; /* a pure ACK (or FIN): no request bytes on it */
  if (!mss)
    tcp_context_clear_received(skops);
  struct ps_conn_key k = {};
  if (tcp_context_key(skops, true, &k) != 0)
    return;
  if (!bpf_map_lookup_elem(&ps_conn_spans, &k))
    return;
  if (bpf_reserve_hdr_opt(skops, TCP_CONTEXT_LEN, 0) != 0 && !mss)
    tcp_context_count(TCP_CONTEXT_NOSPACE);
}

/* WRITE_HDR_OPT: the reserved room is ours (the kernel fills what is left unwritten with NOPs). */
static __always_inline void tcp_context_write(struct bpf_sock_ops *skops) {
  struct ps_conn_key k = {};
  if (tcp_context_key(skops, true, &k) != 0)
    return;
  struct ps_span_ctx *sc = bpf_map_lookup_elem(&ps_conn_spans, &k);
  if (!sc)
    return;
  struct tcp_context_opt opt = {};
  u16 exid = (sc->flags & PS_FLAG_SAMPLED) ? TCP_CONTEXT_EXID_SAMPLED : TCP_CONTEXT_EXID;
  opt.kind = TCP_CONTEXT_KIND;
  opt.len = TCP_CONTEXT_LEN;
  opt.exid[0] = exid >> 8;
  opt.exid[1] = exid & 0xff;
  __builtin_memcpy(opt.trace_id, sc->trace_id, 16);
  __builtin_memcpy(opt.span_id, sc->span_id, 8);
  if (bpf_store_hdr_opt(skops, &opt, sizeof(opt), 0) == 0)
    tcp_context_count(TCP_CONTEXT_WRITTEN);
}

/* Look for our option with the given ExID in the received segment. 0 when found (copied to *opt). */
static __always_inline int tcp_context_find(struct bpf_sock_ops *skops, u16 exid, struct tcp_context_opt *opt) {
  __builtin_memset(opt, 0, sizeof(*opt));
  opt->kind = TCP_CONTEXT_KIND;
  opt->len = 4; /* search by a 2-byte ExID */
  opt->exid[0] = exid >> 8;
  opt->exid[1] = exid & 0xff;
  long n = bpf_load_hdr_opt(skops, opt, sizeof(*opt), 0);
  return n == TCP_CONTEXT_LEN && opt->len == TCP_CONTEXT_LEN ? 0 : -1;
}

/* PARSE_HDR_OPT: a segment with an option the kernel does not know. Only segments with payload (request bytes)
 * count: an option on a bare ACK must not recreate an entry the server has already answered. */
static __always_inline void tcp_context_parse(struct bpf_sock_ops *skops) {
  u8 *data = skops->skb_data;
  u8 *end = skops->skb_data_end;
  if (data + 20 > end)
    return;
  u32 hlen = (u32)(data[12] >> 4) * 4;
  if (skops->skb_len <= hlen)
    return;
  struct tcp_context_opt opt;
  u8 flags = PS_FLAG_SAMPLED;
  if (tcp_context_find(skops, TCP_CONTEXT_EXID_SAMPLED, &opt) != 0) {
    if (tcp_context_find(skops, TCP_CONTEXT_EXID, &opt) != 0)
      return;
    flags = 0;
  }
  u64 t0, t1, s0;
  __builtin_memcpy(&t0, opt.trace_id, 8);
  __builtin_memcpy(&t1, opt.trace_id + 8, 8);
  __builtin_memcpy(&s0, opt.span_id, 8);
  if ((t0 | t1) == 0 || s0 == 0)
    return; /* not a valid W3C context */
  struct ps_conn_key k = {};
  if (tcp_context_key(skops, false, &k) != 0)
    return;
  struct ps_span_ctx sc = {};
  __builtin_memcpy(sc.trace_id, opt.trace_id, 16);
  __builtin_memcpy(sc.span_id, opt.span_id, 8);
  sc.flags = flags;
  bpf_map_update_elem(&ps_conn_spans, &k, &sc, BPF_ANY);
  bpf_map_update_elem(&tcp_context_received, &k, &s0, BPF_ANY);
  tcp_context_count(TCP_CONTEXT_RECEIVED);
}

SEC("sockops")
int tcp_context(struct bpf_sock_ops *skops) {
  switch (skops->op) {
  case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
  case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
    bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | TCP_CONTEXT_CB_FLAGS);
    break;
  case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
    tcp_context_reserve(skops);
    break;
  case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
    tcp_context_write(skops);
    break;
  case BPF_SOCK_OPS_PARSE_HDR_OPT_CB:
    tcp_context_parse(skops);
    break;
  case BPF_SOCK_OPS_STATE_CB:
    /* args[1] is the new state */
    if (skops->args[1] == BPF_TCP_CLOSE)
      tcp_context_clear_received(skops);
    break;
  }
  return 1;
}
