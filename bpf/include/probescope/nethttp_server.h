/* The net/http server probe's request record and its in-flight map, shared with the go/panic probe.
 *
 * nethttp_server.bpf.c fills `nethttp_server_inflight` at serverHandler.ServeHTTP's entry and submits the record at
 * its RET. A handler that panics unwinds past those RETs; when net/http's (*conn).serve recovers the panic, the
 * go/panic probe (go_panic.bpf.c) ends the span from this same entry, through the map it reuses
 * (`shares: ["nethttp_server_inflight"]` in NetHttpServer.ts). Both objects must declare the map identically, hence
 * this header.
 *
 * Needs common.h, go_context.h and nethttp.h first. */
#pragma once

/* Mirrored by `Record` in src/instrumentations/NetHttpServer.ts, checked against this BTF at load. */
struct nethttp_server_record {
  struct ps_http_head head;
  u8 proto_major;
  u8 proto_minor;
  u8 tls;
  u8 method_len;
  u16 path_len;
  u8 host_len;
  u8 remote_len;
  u16 pattern_len;
  u8 scheme_len;
  /* The parent came from the connection map (an instrumented client on this host), not from a header. */
  u8 linked;
  u8 _pad[4];
  char method[16];
  char path[128];
  char host[64];
  char remote[64];
  char pattern[128];
  char scheme[8];
};
PS_RECORD(nethttp_server_record);

/* A request being served: its record so far, the *http.Request, the ResponseWriter's data word, and the request's
 * context value registered in ps_ctx_spans (0: none), which whoever ends the span unregisters. */
struct server_inflight {
  struct nethttp_server_record rec;
  u64 req;
  u64 resp;
  u64 ctx;
};

/* Requests in flight, by goroutine (ServeHTTP's RET runs on the goroutine its entry ran on). */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct ps_g_key);
  __type(value, struct server_inflight);
} nethttp_server_inflight SEC(".maps");
