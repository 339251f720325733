/* TCP connection metrics for any process, from kernel tracepoints only (no uprobes: any language, any runtime).
 *
 * What is measured, per connection of a selected process:
 *   opened      the three-way handshake completed (-> ESTABLISHED), as client (connect) or server (accept side)
 *   failed      a connect that never reached ESTABLISHED (-> CLOSE from SYN_SENT), with the socket's error
 *   closed      an established connection reached CLOSE, with how long it was established and the socket's error
 *   retransmit  segments the kernel retransmitted on it (SYN retransmissions of a connect included)
 *
 * Who owns a socket. Most state changes run in softirq context (a packet arrived, a timer fired), where the current
 * task is whatever was running on that CPU; over loopback it is often the *peer* process, whose send is processed
 * in its own context. So `bpf_get_current_pid_tgid()` is trusted only in task context: not serving a softirq or an
 * interrupt (told by the stack the tracepoint's arguments are on, see task_owner), not a kernel thread. The owner is
 * learned there and kept per socket (tcp_socks, keyed by the struct sock pointer, LRU-bounded, deleted at CLOSE):
 *   - client side: connect() sets SYN_SENT in the caller's context: the owner is known from the first event;
 *   - server side: the accepted socket is born and established in softirq. Its owner is provisionally the process
 *     that listens on its port (tcp_listeners, learned at listen() or from an earlier confirmed connection of that
 *     port), and confirmed at the first task-context event on the socket: a recv or send (sock_recv_length,
 *     sock_send_length), or a state change made by a syscall (close, shutdown). "opened" waits for the confirmation
 *     (so a pre-forked worker, not the listener's parent, gets it), or is reported at close with the provisional
 *     owner when no process ever touched the connection. A connection no selected process is known to own is not
 *     reported at all (see docs/probes/tcp-metrics.md).
 * Only processes with an entry in ps_targets (written by the framework for each selected process) are reported. */
#include "common.h"
#include <bpf/bpf_endian.h>

/* The per-target value: nothing is per process here, the entry's presence is what selects a process. Mirrored by
 * `Target` in src/instrumentations/TcpMetrics.ts. */
struct tcp_metrics_target {
  u8 selected;
};

PS_TARGETS(struct tcp_metrics_target);

enum tcp_metrics_kind {
  TCP_METRICS_OPENED = 1,
  TCP_METRICS_CLOSED = 2,
  TCP_METRICS_FAILED = 3,
  TCP_METRICS_RETRANSMIT = 4,
};

enum tcp_metrics_side {
  TCP_METRICS_CLIENT = 1,
  TCP_METRICS_SERVER = 2,
};

/* One event of one connection. Mirrored by `Record` in src/instrumentations/TcpMetrics.ts, checked against this BTF
 * at load. */
struct tcp_metrics_record {
  /* CLOSED: nanoseconds from ESTABLISHED to CLOSE; 0 otherwise. */
  u64 duration_ns;
  /* The owning process (tgid). */
  u32 pid;
  /* RETRANSMIT: segments retransmitted; 0 otherwise. */
  u32 segments;
  /* The server's port: the peer's for a client connection, the local (listening) one for a server connection. */
  u16 server_port;
  /* CLOSED/FAILED: the socket's error (errno, e.g. 111 ECONNREFUSED); 0 when none. */
  u16 error;
  u8 kind;
  u8 side;
  /* 4 or 6: the network layer on the wire (an AF_INET6 socket talking to a v4-mapped address is 4). */
  u8 ip_version;
  u8 _pad;
};
PS_RECORD(tcp_metrics_record);

/* What is kept per socket between its events. */
struct tcp_sock_state {
  u64 established_ns; /* 0 until ESTABLISHED */
  u32 owner;          /* tgid; for an unconfirmed server socket the listener's owner, or 0 when unknown */
  u32 pending_retransmits; /* segments retransmitted before the owner was confirmed */
  /* Kept from the start: by CLOSE the kernel has already released the socket's local port. */
  u16 server_port;
  u8 ip_version;
  u8 side;
  u8 confirmed; /* owner seen in task context (always so for a client socket) */
  u8 opened;    /* "opened" reported */
  u8 _pad[2];
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, u64);
  __type(value, struct tcp_sock_state);
} tcp_socks SEC(".maps");

/* A selected process listening on a port of a network namespace. */
struct tcp_listener_key {
  u32 netns;
  u16 port;
  u16 _pad;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 1024);
  __type(key, struct tcp_listener_key);
  __type(value, u32);
} tcp_listeners SEC(".maps");

/* Where the tracepoint's arguments are, read back as a number (storing a kernel address in a map is allowed to
 * CAP_PERFMON, which loading tracing programs needs anyway). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, u64);
} tcp_stack_probe SEC(".maps");

/* x86-64: 16 KiB task stacks, twice that with KASAN (libbpf reads the kernel config at load; 0 when absent). */
extern unsigned int CONFIG_KASAN __kconfig __weak;

#define PS_PF_KTHREAD 0x00200000
#define PS_AF_INET 2
#define PS_AF_INET6 10

/* The current tgid when the current task is the one acting on the socket (a syscall, or the socket's backlog
 * processed by the task that holds its lock), else 0: a softirq, an interrupt, or a kernel thread.
 *
 * The kernel's own test (the preempt count) is a per-CPU variable that is not reachable here (no data symbols in
 * kallsyms without CONFIG_KALLSYMS_ALL). Instead: x86-64 runs softirqs and interrupts on per-CPU stacks of their own
 * (CONFIG_SOFTIRQ_ON_OWN_STACK), never on the task's. The tracepoint's argument array (`ctx`) is built on the stack
 * of whoever hit the tracepoint, so it lies inside the current task's stack exactly in task context. (Not our own
 * frame: the JIT may give a tracing program a private per-CPU stack. Softirqs run by ksoftirqd are in a kernel
 * thread: excluded too.) */
static __always_inline u32 task_owner(void *ctx) {
  u32 zero = 0;
  u64 *slot = bpf_map_lookup_elem(&tcp_stack_probe, &zero);
  if (!slot)
    return 0;
  *slot = (u64)ctx;
  asm volatile("" ::: "memory");
  u64 args = *(volatile u64 *)slot;
  struct task_struct *task = bpf_get_current_task_btf();
  u64 base = (u64)task->stack;
  u64 size = CONFIG_KASAN ? 32768 : 16384;
  if (args - base >= size)
    return 0;
  if (task->flags & PS_PF_KTHREAD)
    return 0;
  return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline bool is_tcp(const struct sock *sk) {
  u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
  return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP && (family == PS_AF_INET || family == PS_AF_INET6);
}

static __always_inline struct tcp_listener_key listener_key(const struct sock *sk) {
  struct tcp_listener_key k = {};
  k.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
  k.port = BPF_CORE_READ(sk, __sk_common.skc_num);
  return k;
}

static __always_inline u8 ip_version(const struct sock *sk) {
  if (BPF_CORE_READ(sk, __sk_common.skc_family) == PS_AF_INET)
    return 4;
  /* ::ffff:a.b.c.d: IPv4 on the wire. */
  u32 w[4] = {};
  BPF_CORE_READ_INTO(&w, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32);
  return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff) ? 4 : 6;
}

/* A new socket's state: the server's port (the peer's for a client, ours for a server) and the IP version. */
static __always_inline void init_state(struct tcp_sock_state *n, const struct sock *sk, u8 side) {
  n->side = side;
  n->server_port = side == TCP_METRICS_CLIENT ? bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport))
                                              : BPF_CORE_READ(sk, __sk_common.skc_num);
  n->ip_version = ip_version(sk);
}

static __always_inline void submit(const struct sock *sk, const struct tcp_sock_state *s, u8 kind, u64 duration_ns,
                                   u32 segments) {
  struct tcp_metrics_record *r = ps_reserve(struct tcp_metrics_record);
  if (!r)
    return;
  r->duration_ns = duration_ns;
  r->pid = s->owner;
  r->segments = segments;
  r->server_port = s->server_port;
  r->error = (kind == TCP_METRICS_CLOSED || kind == TCP_METRICS_FAILED) ? (u16)BPF_CORE_READ(sk, sk_err) : 0;
  r->kind = kind;
  r->side = s->side;
  r->ip_version = s->ip_version;
  r->_pad = 0;
  ps_commit(r);
}

/* A task-context event on a socket whose owner is not confirmed yet. Returns false when the socket turned out to
 * belong to a process that is not selected (its entry is then deleted). */
static __always_inline bool confirm(const struct sock *sk, u64 key, struct tcp_sock_state *s, u32 tgid) {
  if (!ps_target()) {
    bpf_map_delete_elem(&tcp_socks, &key);
    return false;
  }
  s->owner = tgid;
  s->confirmed = 1;
  /* A listener that predates the agent: later connections on its port start with this owner. */
  struct tcp_listener_key lk = listener_key(sk);
  bpf_map_update_elem(&tcp_listeners, &lk, &tgid, BPF_NOEXIST);
  if (!s->opened && s->established_ns != 0) {
    submit(sk, s, TCP_METRICS_OPENED, 0, 0);
    s->opened = 1;
  }
  if (s->pending_retransmits != 0) {
    submit(sk, s, TCP_METRICS_RETRANSMIT, 0, s->pending_retransmits);
    s->pending_retransmits = 0;
  }
  return true;
}

static __always_inline void on_established(void *ctx, const struct sock *sk, u64 key, int oldstate) {
  struct tcp_sock_state *s = bpf_map_lookup_elem(&tcp_socks, &key);
  if (s) {
    /* A connect of a selected process (or a simultaneous open). */
    s->established_ns = bpf_ktime_get_ns();
    s->opened = 1;
    submit(sk, s, TCP_METRICS_OPENED, 0, 0);
    return;
  }
  if (oldstate != TCP_SYN_RECV)
    return;
  /* Accepted side. In task context (the listener's backlog processed by the process holding its lock) the owner is
   * known now; in softirq it starts as the listener's owner, unconfirmed. */
  struct tcp_sock_state n = {};
  n.established_ns = bpf_ktime_get_ns();
  init_state(&n, sk, TCP_METRICS_SERVER);
  u32 tgid = task_owner(ctx);
  if (tgid != 0) {
    if (!ps_target())
      return;
    n.owner = tgid;
    n.confirmed = 1;
    n.opened = 1;
    submit(sk, &n, TCP_METRICS_OPENED, 0, 0);
  } else {
    struct tcp_listener_key lk = listener_key(sk);
    u32 *listener = bpf_map_lookup_elem(&tcp_listeners, &lk);
    n.owner = listener ? *listener : 0;
  }
  bpf_map_update_elem(&tcp_socks, &key, &n, BPF_ANY);
}

static __always_inline void on_close(void *ctx, const struct sock *sk, u64 key) {
  struct tcp_sock_state *s = bpf_map_lookup_elem(&tcp_socks, &key);
  if (!s)
    return;
  if (!s->confirmed) {
    u32 tgid = task_owner(ctx);
    if (tgid != 0 && !confirm(sk, key, s, tgid))
      return;
  }
  if (s->established_ns == 0) {
    submit(sk, s, TCP_METRICS_FAILED, 0, 0);
  } else if (s->opened || (s->owner != 0 && bpf_map_lookup_elem(&ps_targets, &s->owner))) {
    /* Never touched by a process (reset or dropped before accept): the listener's owner, when one is known and is
     * still selected. */
    if (!s->opened)
      submit(sk, s, TCP_METRICS_OPENED, 0, 0);
    if (s->pending_retransmits != 0)
      submit(sk, s, TCP_METRICS_RETRANSMIT, 0, s->pending_retransmits);
    submit(sk, s, TCP_METRICS_CLOSED, bpf_ktime_get_ns() - s->established_ns, 0);
  }
  bpf_map_delete_elem(&tcp_socks, &key);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_set_state, const struct sock *sk, int oldstate, int newstate) {
  if (!is_tcp(sk))
    return 0;
  u64 key = (u64)sk;
  switch (newstate) {
  case TCP_SYN_SENT: {
    /* connect(): always the caller's context. */
    u32 tgid = task_owner(ctx);
    if (tgid == 0 || !ps_target())
      return 0;
    struct tcp_sock_state n = {};
    n.owner = tgid;
    init_state(&n, sk, TCP_METRICS_CLIENT);
    n.confirmed = 1;
    bpf_map_update_elem(&tcp_socks, &key, &n, BPF_ANY);
    return 0;
  }
  case TCP_LISTEN: {
    u32 tgid = task_owner(ctx);
    if (tgid == 0 || !ps_target())
      return 0;
    struct tcp_listener_key lk = listener_key(sk);
    bpf_map_update_elem(&tcp_listeners, &lk, &tgid, BPF_ANY);
    return 0;
  }
  case TCP_ESTABLISHED:
    on_established(ctx, sk, key, oldstate);
    return 0;
  case TCP_CLOSE:
    if (oldstate == TCP_LISTEN) {
      /* Only the closing owner forgets its port (SO_REUSEPORT: another process may listen on it too). */
      struct tcp_listener_key lk = listener_key(sk);
      u32 *owner = bpf_map_lookup_elem(&tcp_listeners, &lk);
      if (owner && *owner == task_owner(ctx))
        bpf_map_delete_elem(&tcp_listeners, &lk);
      return 0;
    }
    on_close(ctx, sk, key);
    return 0;
  default: {
    /* FIN_WAIT1 / LAST_ACK from close() or shutdown(), ...: in task context, they confirm the owner. */
    struct tcp_sock_state *s = bpf_map_lookup_elem(&tcp_socks, &key);
    if (s && !s->confirmed) {
      u32 tgid = task_owner(ctx);
      if (tgid != 0)
        confirm(sk, key, s, tgid);
    }
    return 0;
  }
  }
}

/* The first recv or send of an accepted socket is usually where its owner shows itself. Both run in the calling
 * task's context; all that is done for a socket already confirmed (or not tracked) is one map lookup. */
static __always_inline void on_io(void *ctx, struct sock *sk) {
  /* Every socket's I/O passes here (UNIX, UDP, ...): one field read turns the others away before the map lookup. */
  if (!sk || sk->sk_protocol != IPPROTO_TCP)
    return;
  u64 key = (u64)sk;
  struct tcp_sock_state *s = bpf_map_lookup_elem(&tcp_socks, &key);
  if (!s || s->confirmed)
    return;
  u32 tgid = task_owner(ctx);
  if (tgid != 0)
    confirm(sk, key, s, tgid);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tcp_recv, struct sock *sk, int ret, int flags) {
  on_io(ctx, sk);
  return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tcp_send, struct sock *sk, int ret, int flags) {
  on_io(ctx, sk);
  return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int tcp_retransmit(u64 *ctx) {
  const struct sock *sk = (const struct sock *)ctx[0];
  const struct sk_buff *skb = (const struct sk_buff *)ctx[1];
  /* Recent kernels also report retransmissions that failed to go out, with their error as a third argument: not
   * retransmitted. Older ones have no such argument (and report successes only); reading it there would not load,
   * so it is read only where the tracepoint's event has the field (the branch is removed at load elsewhere). */
  if (bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err) && (int)ctx[2] != 0)
    return 0;
  u64 key = (u64)sk;
  struct tcp_sock_state *s = bpf_map_lookup_elem(&tcp_socks, &key);
  if (!s)
    return 0;
  const struct tcp_skb_cb *cb = (const struct tcp_skb_cb *)&skb->cb[0];
  u32 segments = BPF_CORE_READ(cb, tcp_gso_segs);
  if (segments == 0)
    segments = 1;
  if (s->confirmed)
    submit(sk, s, TCP_METRICS_RETRANSMIT, 0, segments);
  else
    __sync_fetch_and_add(&s->pending_retransmits, segments);
  return 0;
}
