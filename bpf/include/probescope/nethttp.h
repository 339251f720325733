/* What the net/http server and client probes share: the common record head and the http.Header lookup.
 *
 * http.Header is a map[string][]string. Go 1.24+ maps are swiss tables (internal/runtime/maps): a Map header, then
 * either one group (small map, dirLen == 0) or a directory of tables, each an array of groups. A group is 8 control
 * bytes followed by 8 slots of key/elem. The hash seed is per map and the hash is runtime.memhash (AES on amd64), so
 * BPF cannot compute where a key lives: the lookup scans every full slot, within fixed bounds. Struct offsets come
 * per process (ps_swiss_offsets inside each probe's ps_targets value); the group geometry is fixed by the ABI.
 *
 * Needs common.h and go_context.h first. */
#pragma once

/* Offsets into internal/runtime/maps structs, part of each probe's per-target offsets. */
struct ps_swiss_offsets {
  u64 map_dir_ptr;
  u64 map_dir_len;
  /* table.groups.data and table.groups.lengthMask, from the table's start */
  u64 table_groups_data;
  u64 table_groups_mask;
};

/* A group is a control word followed by 8 slots of key (string, 16 bytes) + elem ([]string, 24 bytes). These follow
 * from the Go ABI, not from a struct declaration, so they are not per target. */
#define PS_MAP_GROUP_CTRL_BYTES 8
#define PS_HEADER_SLOT_BYTES 40
#define PS_HEADER_GROUP_BYTES (PS_MAP_GROUP_CTRL_BYTES + 8 * PS_HEADER_SLOT_BYTES)

#define PS_MAP_GROUP_SLOTS 8
/* Bounds of the scan: 8 tables x 32 groups x 8 slots. One table holds up to 1024 slots (128 groups) before it
 * splits, so this covers headers of up to ~220 fields; a larger one may hide its traceparent. */
#define PS_MAP_MAX_TABLES 8
#define PS_MAP_MAX_GROUPS 32

/* Where a record's kind tells user space which layout follows the head. */
#define PS_KIND_NETHTTP_SERVER 1
#define PS_KIND_NETHTTP_CLIENT 2

#define PS_PARENT_NONE 0
#define PS_PARENT_LOCAL 1
#define PS_PARENT_REMOTE 2

/* The first 56 bytes of every net/http record. Mirrored by `head` in src/instrumentations/internal/Http.ts. */
struct ps_http_head {
  u64 start_ns;
  u64 end_ns;
  u8 trace_id[16];
  u8 span_id[8];
  u8 parent_span_id[8];
  u32 pid;
  u8 flags;
  u8 parent;
  u16 status;
};

/* The record head's ids: the span's, and (when it has one) its parent's span id with where it came from. */
static __always_inline void ps_http_head_ids(struct ps_http_head *h, const struct ps_span_ctx *sc,
                                             const struct ps_span_ctx *parent, u8 parent_kind) {
  __builtin_memcpy(h->trace_id, sc->trace_id, 16);
  __builtin_memcpy(h->span_id, sc->span_id, 8);
  h->flags = sc->flags;
  if (parent) {
    __builtin_memcpy(h->parent_span_id, parent->span_id, 8);
    h->parent = parent_kind;
  }
}

/* A header name in canonical form, zero-padded to 16 bytes so it compares as two words. */
struct ps_header_key {
  u64 name[2];
  u64 len;
};

/* Compare the slot's key (a Go string header at `slot`) with `want`. */
static __always_inline bool ps_header_key_is(u64 slot, const struct ps_header_key *want) {
  struct go_string k = {};
  if (bpf_probe_read_user(&k, sizeof(k), (const void *)slot) != 0)
    return false;
  if (k.len != want->len || k.len == 0 || k.len > 16 || k.ptr == 0)
    return false;
  u64 buf[2] = {};
  if (bpf_probe_read_user(buf, k.len & 15 ? k.len & 15 : 16, (const void *)k.ptr) != 0)
    return false;
  return buf[0] == want->name[0] && buf[1] == want->name[1];
}

/* Scan one group; on a match store the first value string's header in *out and return 1. */
static __always_inline int ps_header_scan_group(u64 group, const struct ps_header_key *want, struct go_string *out) {
  u64 ctrl = ps_read_u64(group);
  for (int i = 0; i < PS_MAP_GROUP_SLOTS; i++) {
    /* bit 7 set: empty or deleted */
    if ((ctrl >> (8 * i)) & 0x80)
      continue;
    u64 slot = group + PS_MAP_GROUP_CTRL_BYTES + (u64)i * PS_HEADER_SLOT_BYTES;
    if (!ps_header_key_is(slot, want))
      continue;
    struct go_slice vals = {};
    if (bpf_probe_read_user(&vals, sizeof(vals), (const void *)(slot + 16)) != 0 || vals.len == 0)
      return 0;
    if (bpf_probe_read_user(out, sizeof(*out), (const void *)vals.ptr) != 0)
      return 0;
    return 1;
  }
  return 0;
}

struct ps_header_scan {
  struct ps_swiss_offsets off;
  u64 dir_ptr;
  u64 dir_len;
  struct ps_header_key want;
  struct go_string out;
  int found;
};

/* bpf_loop callback over (table, group) pairs: one verified body instead of nested unrolled loops. */
static long ps_header_scan_step(u32 idx, void *data) {
  struct ps_header_scan *s = data;
  u64 t = idx / PS_MAP_MAX_GROUPS;
  u64 gi = idx % PS_MAP_MAX_GROUPS;
  if (t >= s->dir_len)
    return 1;
  u64 table = ps_read_u64(s->dir_ptr + 8 * t);
  if (table == 0)
    return 0;
  u64 ngroups = ps_read_u64(table + s->off.table_groups_mask) + 1;
  if (gi >= ngroups)
    return 0;
  u64 groups = ps_read_u64(table + s->off.table_groups_data);
  if (ps_header_scan_group(groups + gi * PS_HEADER_GROUP_BYTES, &s->want, &s->out)) {
    s->found = 1;
    return 1;
  }
  return 0;
}

/* Find the first value of the header `s->want` in the http.Header at `m` (s->off set by the caller). */
static __always_inline int ps_header_get(u64 m, struct ps_header_scan *s) {
  if (m == 0)
    return 0;
  s->dir_ptr = ps_read_u64(m + s->off.map_dir_ptr);
  s->dir_len = ps_read_u64(m + s->off.map_dir_len);
  s->found = 0;
  if (s->dir_ptr == 0)
    return 0;
  if (s->dir_len == 0)
    return ps_header_scan_group(s->dir_ptr, &s->want, &s->out);
  bpf_loop(PS_MAP_MAX_TABLES * PS_MAP_MAX_GROUPS, ps_header_scan_step, s, 0);
  return s->found;
}

/* The incoming/outgoing "Traceparent" header parsed, 0 on success. */
static __always_inline int ps_header_traceparent(u64 header_map, const struct ps_swiss_offsets *off,
                                                 struct ps_span_ctx *out) {
  struct ps_header_scan s = {};
  s.off = *off;
  /* "Traceparent" as little-endian words */
  s.want.name[0] = 0x7261706563617254ULL;
  s.want.name[1] = 0x746e65ULL;
  s.want.len = 11;
  if (!ps_header_get(header_map, &s) || s.out.len < PS_TRACEPARENT_LEN)
    return -1;
  struct go_string v = s.out;
  u8 tp[PS_TRACEPARENT_LEN + 1] = {};
  if (bpf_probe_read_user(tp, PS_TRACEPARENT_LEN, (const void *)v.ptr) != 0)
    return -1;
  return ps_traceparent_parse(tp, out);
}

/* ---- Same-host propagation: a TCP connection's addresses, read from Go's net package ----
 *
 * net.Conn (interface) -> data *net.TCPConn = struct{ conn{ fd *netFD } } -> netFD.laddr/raddr (net.Addr
 * interfaces) -> data *net.TCPAddr{ IP []byte, Port int }. Offsets come per process; `enabled` is 0 when any of
 * them is unknown or does not fit the blocks below, which turns the feature off for that process.
 *
 * Each user-memory read costs ~0.1 us here, so the netFD fields are read as one block starting at netFD.family and
 * a TCPAddr as one block starting at IP; user space gives the other fields as word indices into those blocks. */
#define PS_NETFD_BLOCK_WORDS 9
#define PS_TCPADDR_BLOCK_WORDS 4

struct ps_tcp_offsets {
  u64 enabled;
  /* net.TCPConn.conn + net.conn.fd */
  u64 tcpconn_fd;
  /* netFD.family: where the netFD block starts (its word 0) */
  u64 netfd_family;
  /* word indices into the netFD block */
  u64 netfd_sotype_w;
  u64 netfd_laddr_w;
  u64 netfd_raddr_w;
  /* TCPAddr.IP: where the TCPAddr block starts (the slice is words 0-2) */
  u64 tcpaddr_ip;
  /* word index of TCPAddr.Port in its block */
  u64 tcpaddr_port_w;
};

/* One end of a TCP connection, IPv4 as v4-mapped IPv6. */
struct ps_addr {
  u8 ip[16];
  u16 port;
};

#define PS_AF_INET 2
#define PS_AF_INET6 10
#define PS_SOCK_STREAM 1

/* Read a *net.TCPAddr. 0 on success; rejects anything that is not a 4- or 16-byte IP with a port in 1..65535. */
static __always_inline int ps_tcp_addr_read(u64 addr, const struct ps_tcp_offsets *o, struct ps_addr *out) {
  u64 blk[PS_TCPADDR_BLOCK_WORDS] = {};
  u64 pw = o->tcpaddr_port_w;
  if (addr == 0 || pw < 3 || pw >= PS_TCPADDR_BLOCK_WORDS)
    return -1;
  if (bpf_probe_read_user(blk, sizeof(blk), (const void *)(addr + o->tcpaddr_ip)) != 0)
    return -1;
  u64 ptr = blk[0], len = blk[1], cap = blk[2], port = blk[pw];
  if (ptr == 0 || cap < len || port == 0 || port > 65535)
    return -1;
  __builtin_memset(out->ip, 0, sizeof(out->ip));
  if (len == 4) {
    out->ip[10] = 0xff;
    out->ip[11] = 0xff;
    if (bpf_probe_read_user(out->ip + 12, 4, (const void *)ptr) != 0)
      return -1;
  } else if (len == 16) {
    if (bpf_probe_read_user(out->ip, 16, (const void *)ptr) != 0)
      return -1;
  } else {
    return -1;
  }
  out->port = (u16)port;
  return 0;
}

/* Local and remote address of the connection whose net.Conn interface holds `conn` as data. 0 on success.
 *
 * The data word is only known to be a *net.TCPConn by its shape: the netFD it leads to must be a stream socket of
 * family AF_INET or AF_INET6, and both addresses must decode. TLS (*tls.Conn) and wrapped connections fail these
 * checks and are skipped. */
static __always_inline int ps_tcp_conn_addrs(u64 conn, const struct ps_tcp_offsets *o, struct ps_addr *local,
                                             struct ps_addr *remote) {
  u64 sw = o->netfd_sotype_w, lw = o->netfd_laddr_w, rw = o->netfd_raddr_w;
  if (!o->enabled || conn == 0 || sw >= PS_NETFD_BLOCK_WORDS || lw + 1 >= PS_NETFD_BLOCK_WORDS ||
      rw + 1 >= PS_NETFD_BLOCK_WORDS)
    return -1;
  u64 fd = ps_read_u64(conn + o->tcpconn_fd);
  if (fd == 0)
    return -1;
  u64 blk[PS_NETFD_BLOCK_WORDS] = {};
  if (bpf_probe_read_user(blk, sizeof(blk), (const void *)(fd + o->netfd_family)) != 0)
    return -1;
  u64 family = blk[0];
  if ((family != PS_AF_INET && family != PS_AF_INET6) || blk[sw] != PS_SOCK_STREAM)
    return -1;
  /* The interfaces' data words (the second word of each). */
  if (ps_tcp_addr_read(blk[lw + 1], o, local) != 0 || ps_tcp_addr_read(blk[rw + 1], o, remote) != 0)
    return -1;
  return 0;
}

/* The shared map's key for a connection seen from its client or its server end. */
static __always_inline void ps_conn_key_of(struct ps_conn_key *k, const struct ps_addr *client,
                                           const struct ps_addr *server) {
  __builtin_memcpy(k->client_ip, client->ip, 16);
  __builtin_memcpy(k->server_ip, server->ip, 16);
  k->client_port = client->port;
  k->server_port = server->port;
  k->_pad = 0;
}
