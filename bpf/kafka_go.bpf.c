/* kafka-go (github.com/segmentio/kafka-go v0.4): a PRODUCER span per Writer.WriteMessages call and a CONSUMER span
 * per Reader.ReadMessage / Reader.FetchMessage call, and the trace carried from producer to consumer on this host.
 *
 * Where:
 *   (*Writer).WriteMessages(w, ctx context.Context, msgs ...Message) error
 *       entry RAX=w, RBX/RCX=ctx, RDI/RSI/R8=msgs (ptr, len, cap); every RET has the error in RAX (itab) / RBX.
 *   (*Reader).ReadMessage(r, ctx) (Message, error) and (*Reader).FetchMessage(r, ctx) (Message, error)
 *       entry RAX=r, RBX/RCX=ctx. A Message is 19 words, more than the 9 integer registers, so Go's ABI returns it
 *       in memory: in the caller's frame right above the return address (there are no stack-assigned arguments),
 *       i.e. at SP+8 at RET (read there, not at the entry's address: the goroutine's stack can be moved to a larger
 *       one while the call blocks). The error still comes back in RAX/RBX.
 *   ReadMessage calls FetchMessage (then CommitMessages for a consumer group) on the same goroutine: the inner
 *   FetchMessage is not a span of its own.
 *
 * Propagation. kafka-go's own way would be a `traceparent` header in Message.Headers, written by the producer and
 * read by the consumer; adding one means writing the caller's memory, which bpf_probe_write_user does and this
 * kernel forbids (lockdown). So the fallback, for producer and consumer on the same host: at WriteMessages entry the
 * producer publishes its span context in kafka_go_msg_spans under a key both ends compute from the message alone —
 * a 64-bit FNV-1a hash of the topic, the key and the value (each's first KAFKA_GO_HASH_BYTES bytes) plus the key's
 * and value's full lengths — and the consumer, at the RET that hands it the message, looks the same key up: found,
 * its span continues the producer's trace with the producer span as parent. Limits (docs/probes/kafka-go.md): same
 * host (one agent, one map), identical messages share an entry (the latest producer wins), the map is an LRU of
 * KAFKA_GO_MSG_SPANS entries (a message consumed after that many newer ones were produced is not linked), only the
 * first KAFKA_GO_LINK_BATCH messages of one WriteMessages call are published.
 *
 * Parents in the process: the span of the call's context.Context, else the goroutine's active span (ps_go_parent in
 * go_context.h), at entry. The context is RBX (itab) / RCX (data word) at every entry.
 *
 * After a read returns a message, its CONSUMER span is the goroutine's active span until the goroutine's next read
 * (kafka_go_processing): the program's work on the message without a context span of its own — a WriteMessages of
 * a consume-transform-produce loop, an HTTP call with context.Background() — continues the message's trace. */
#include "common.h"
#include "go_context.h"
#include "go_types.h"
#include "sampling.h"
#include "strings.h"

#define KAFKA_GO_HASH_BYTES 64
#define KAFKA_GO_LINK_BATCH 16
#define KAFKA_GO_MSG_SPANS 4096

/* Op kinds of kafka_go_record.op_kind. */
#define KAFKA_GO_SEND 1
#define KAFKA_GO_READ 2
#define KAFKA_GO_FETCH 3

/* kafka_go_record.parent */
#define KAFKA_GO_PARENT_NONE 0
#define KAFKA_GO_PARENT_LOCAL 1
#define KAFKA_GO_PARENT_PRODUCER 2

/* Mirrored by `Target` in src/instrumentations/KafkaGo.ts, checked against this BTF at load. */
struct kafka_go_target {
  /* runtime.types minus the address of each entry probe (the instruction pointer the program sees there). */
  s64 types_from_write;
  s64 types_from_read;
  s64 types_from_fetch;
  u64 types_known;
  struct ps_go_type_offsets type;
  u64 writer_addr;
  u64 writer_topic;
  u64 network_address;
  u64 reader_config;
  u64 config_brokers;
  u64 config_group;
  u64 config_topic;
  u64 msg_topic;
  u64 msg_partition;
  u64 msg_offset;
  u64 msg_key;
  u64 msg_value;
  /* sizeof(Message): the stride of a []Message. */
  u64 msg_size;
  /* Whether the producer (WriteMessages) and the consumer (ReadMessage/FetchMessage) sides are probed: a program
   * that only produces has no Reader in it (its functions and type are linked out), and the other way round. */
  u64 writer_ok;
  u64 reader_ok;
};

PS_TARGETS(struct kafka_go_target);

/* Mirrored by `Record` in src/instrumentations/KafkaGo.ts, checked against this BTF at load. */
struct kafka_go_record {
  u64 start_ns;
  u64 end_ns;
  u8 trace_id[16];
  u8 span_id[8];
  u8 parent_span_id[8];
  u32 pid;
  u8 flags;
  u8 parent;
  u8 op_kind;
  u8 has_error;
  /* Messages given to WriteMessages; 1 for a consumer. */
  u32 batch;
  /* The message's partition and offset (consumer; -1 when unknown). */
  s32 partition;
  s64 offset;
  /* The error's value when its dynamic type is an integer kind (kafka.Error: the protocol's error code). */
  s64 err_code;
  /* What could not be read here (else 0), for user space (go_types.h): the error's itab, with runtime.types, and
   * where its value is when its type was not read (it may be an integer kind). */
  u64 types;
  u64 err_at;
  u64 err_code_at;
  /* The Writer's Addr's itab when its type could not be told here, and the address when it could not be read (its
   * bytes or its header, addr_cold_len: a constant given to kafka.TCP). */
  u64 addr_type_at;
  u64 addr_at;
  /* The message key's full length (one message only); key holds its first bytes. */
  u32 key_size;
  u8 has_key;
  u8 topic_len;
  u8 key_len;
  u8 addr_len;
  u8 group_len;
  u8 err_type_len;
  u8 err_kind;
  u8 err_tflag;
  /* The address's length when its bytes are at addr_at (0: addr_at is its header's address). */
  u8 addr_cold_len;
  char topic[64];
  u8 key[32];
  char addr[64];
  char group[64];
  char err_type[64];
};
PS_RECORD(kafka_go_record);

/* ---- same-host propagation: message -> producer span ---- */

struct kafka_go_msg_key {
  u64 hash;
  u32 key_size;
  u32 value_size;
};

/* No pid in the key: this is where the producer process and the consumer process meet. LRU: an entry nobody
 * consumes (or that several consumer groups read) ages out. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, KAFKA_GO_MSG_SPANS);
  __type(key, struct kafka_go_msg_key);
  __type(value, struct ps_span_ctx);
} kafka_go_msg_spans SEC(".maps");

/* The bytes hashed for one message: topic, key and value, each cut at KAFKA_GO_HASH_BYTES, zero-padded. */
struct hash_buf {
  u8 b[3 * KAFKA_GO_HASH_BYTES];
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct hash_buf);
} kafka_go_hash_scratch SEC(".maps");

/* A slice's first KAFKA_GO_HASH_BYTES bytes into dst (zeroed first). */
static __always_inline void read_prefix(u8 *dst, u64 ptr, u64 len) {
  __builtin_memset(dst, 0, KAFKA_GO_HASH_BYTES);
  ps_read_go_str(dst, KAFKA_GO_HASH_BYTES, ptr, len);
}

/* The key of a message with topic `topic` (topic_len bytes at most 64), key and value slices; 0 when unreadable. */
static __always_inline int msg_key(struct kafka_go_msg_key *k, const char *topic, u32 topic_len,
                                   const struct go_slice *key, const struct go_slice *value) {
  u32 zero = 0;
  struct hash_buf *buf = bpf_map_lookup_elem(&kafka_go_hash_scratch, &zero);
  if (!buf || topic_len == 0)
    return -1;
  __builtin_memcpy(buf->b, topic, 64); /* zero-padded past topic_len */
  read_prefix(buf->b + KAFKA_GO_HASH_BYTES, key->ptr, key->len);
  read_prefix(buf->b + 2 * KAFKA_GO_HASH_BYTES, value->ptr, value->len);
  u64 h = 0xcbf29ce484222325ULL;
  for (int i = 0; i < 3 * KAFKA_GO_HASH_BYTES; i++) {
    h ^= buf->b[i];
    h *= 0x100000001b3ULL;
  }
  k->hash = h;
  k->key_size = key->len > 0xffffffff ? 0xffffffff : (u32)key->len;
  k->value_size = value->len > 0xffffffff ? 0xffffffff : (u32)value->len;
  return 0;
}

/* ---- in flight ---- */

/* Per goroutine and op kind: ReadMessage and its inner FetchMessage are both under way on one goroutine. */
struct inflight_key {
  struct ps_g_key g;
  u32 op_kind;
  u32 _pad;
};

struct inflight {
  struct kafka_go_record rec;
  /* runtime.types as this process has it, 0 when unknown. */
  u64 types;
  /* Consumer: the span of the call's context or goroutine at entry. */
  struct ps_span_ctx local;
  u8 has_local;
  u8 _pad[7];
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct inflight_key);
  __type(value, struct inflight);
} kafka_go_inflight SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct inflight);
} kafka_go_scratch SEC(".maps");

static __always_inline struct inflight_key key_of(u64 g, u32 op_kind) {
  struct inflight_key k = {.g = ps_g_key_of(g), .op_kind = op_kind, ._pad = 0};
  return k;
}

static __always_inline struct inflight *scratch(void) {
  u32 zero = 0;
  struct inflight *inf = bpf_map_lookup_elem(&kafka_go_scratch, &zero);
  if (inf)
    __builtin_memset(inf, 0, sizeof(*inf));
  return inf;
}

/* ---- after a read: the consumer span is the goroutine's active span ---- */

/* What a read's RET made active on its goroutine, and what was active before (put back at the next read). */
struct processing {
  struct ps_span_ctx set;
  struct ps_span_ctx prev;
  u8 had_prev;
  u8 _pad[7];
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct ps_g_key);
  __type(value, struct processing);
} kafka_go_processing SEC(".maps");

/* At a read's entry: the previous message's span stops being the goroutine's active span — unless something else
 * (a server span that began meanwhile) replaced it, which is then left alone. */
static __always_inline void end_processing(u64 g) {
  struct ps_g_key k = ps_g_key_of(g);
  struct processing *p = bpf_map_lookup_elem(&kafka_go_processing, &k);
  if (!p)
    return;
  struct ps_span_ctx *cur = ps_go_ctx_get(g);
  u64 a = 0, b = 0;
  if (cur) {
    __builtin_memcpy(&a, cur->span_id, 8);
    __builtin_memcpy(&b, p->set.span_id, 8);
  }
  if (cur && a == b) {
    if (p->had_prev)
      ps_go_ctx_set(g, &p->prev);
    else
      ps_go_ctx_clear(g);
  }
  bpf_map_delete_elem(&kafka_go_processing, &k);
}

/* At a read's RET: the consumer span becomes the goroutine's active span, so what the program does with the message
 * on that goroutine without a context span of its own (context.Background()) continues its trace. */
static __always_inline void begin_processing(u64 g, const struct ps_span_ctx *sc) {
  struct processing p = {};
  p.set = *sc;
  struct ps_span_ctx *cur = ps_go_ctx_get(g);
  if (cur) {
    p.prev = *cur;
    p.had_prev = 1;
  }
  struct ps_g_key k = ps_g_key_of(g);
  bpf_map_update_elem(&kafka_go_processing, &k, &p, BPF_ANY);
  ps_go_ctx_set(g, sc);
}

/* ---- producer ---- */

/* The name of the dynamic type kafka.TCP(address) puts in a Writer's Addr. Compared by name: Go 1.27 binaries have
 * no itab symbols to compare the itab's address with. */
#define NETWORK_ADDRESS "*kafka.networkAddress"

/* 1 when the itab `tab` is *networkAddress's, 0 when it is not, -1 when its type could not be read here (*cold then
 * gets the itab, for user space to tell). */
static __always_inline int is_network_address(u64 tab, u64 types, const struct kafka_go_target *t, u64 *cold) {
  char name[32] = {};
  const char want[] = NETWORK_ADDRESS;
  struct ps_go_type ty = {};
  u32 n = ps_go_itab_describe(name, sizeof(name), tab, types, &t->type, &ty, cold);
  if (*cold)
    return -1;
  if (n != sizeof(want) - 1)
    return 0;
  for (int i = 0; i < sizeof(want) - 1; i++)
    if (name[i] != want[i])
      return 0;
  return 1;
}

/* What publishing a WriteMessages call's messages needs, for bpf_loop's callback (verified once, not per message). */
struct publish {
  u64 msgs;
  u64 n;
  u64 msg_size;
  u64 msg_key;
  u64 msg_value;
  u32 topic_len;
  u32 _pad;
  char topic[64];
  struct ps_span_ctx sc;
};

/* Message i of the call: its key in kafka_go_msg_spans -> the producer span. */
static long publish_one(u32 i, void *data) {
  struct publish *p = data;
  if ((u64)i >= p->n)
    return 1;
  u64 m = p->msgs + (u64)i * p->msg_size;
  struct go_slice key = {}, value = {};
  bpf_probe_read_user(&key, sizeof(key), (const void *)(m + p->msg_key));
  bpf_probe_read_user(&value, sizeof(value), (const void *)(m + p->msg_value));
  struct kafka_go_msg_key k = {};
  if (msg_key(&k, p->topic, p->topic_len, &key, &value) == 0)
    bpf_map_update_elem(&kafka_go_msg_spans, &k, &p->sc, BPF_ANY);
  return 0;
}

/* github.com/segmentio/kafka-go.(*Writer).WriteMessages: RAX=w, RBX/RCX=ctx, RDI/RSI/R8=msgs. */
SEC("uprobe/kafka_go_WriteMessages")
int uprobe_WriteMessages(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  u64 w = GO_ARG1(ctx);
  u64 msgs = GO_ARG4(ctx);
  u64 n = GO_ARG5(ctx);
  struct kafka_go_target *t = ps_target();
  if (!t || !t->writer_ok || w == 0 || n == 0)
    return 0;
  struct inflight *inf = scratch();
  if (!inf)
    return 0;
  struct kafka_go_record *r = &inf->rec;
  r->start_ns = bpf_ktime_get_ns();
  r->pid = ps_tgid();
  r->op_kind = KAFKA_GO_SEND;
  r->batch = n > 0xffffffff ? 0xffffffff : (u32)n;
  r->partition = -1;
  r->offset = -1;
  if (t->types_known)
    inf->types = PT_REGS_IP(ctx) + (u64)t->types_from_write;

  struct ps_span_ctx local = {};
  struct ps_span_ctx *parent = ps_go_parent(g, GO_ARG3(ctx), &local) == 0 ? &local : NULL;
  struct ps_span_ctx sc = {};
  if (parent) {
    __builtin_memcpy(r->parent_span_id, parent->span_id, 8);
    r->parent = KAFKA_GO_PARENT_LOCAL;
  }
  ps_span_begin(parent, &sc);
  __builtin_memcpy(r->trace_id, sc.trace_id, 16);
  __builtin_memcpy(r->span_id, sc.span_id, 8);
  r->flags = sc.flags;

  /* The topic: the Writer's, else the first message's (kafka-go refuses a message topic when the Writer has one). */
  r->topic_len = ps_read_go_str_at(r->topic, sizeof(r->topic), w + t->writer_topic);
  if (r->topic_len == 0)
    r->topic_len = ps_read_go_str_at(r->topic, sizeof(r->topic), msgs + t->msg_topic);

  /* Published whether sampled or not: the consumer follows the producer's decision. */
  struct publish pub = {.msgs = msgs, .n = n, .msg_size = t->msg_size, .msg_key = t->msg_key,
                        .msg_value = t->msg_value, .topic_len = r->topic_len, .sc = sc};
  __builtin_memcpy(pub.topic, r->topic, sizeof(pub.topic));
  bpf_loop(KAFKA_GO_LINK_BATCH, publish_one, &pub, 0);

  if (r->flags & PS_FLAG_SAMPLED) {
    if (n == 1) {
      struct go_slice key = {};
      if (bpf_probe_read_user(&key, sizeof(key), (const void *)(msgs + t->msg_key)) == 0 && key.ptr) {
        r->has_key = 1;
        r->key_size = key.len > 0xffffffff ? 0xffffffff : (u32)key.len;
        r->key_len = ps_read_go_str(r->key, sizeof(r->key), key.ptr, key.len);
      }
    }
    /* Writer.Addr: the broker address when it is kafka.TCP(one address), a *networkAddress. */
    struct go_iface addr = {};
    if (bpf_probe_read_user(&addr, sizeof(addr), (const void *)(w + t->writer_addr)) == 0 && addr.tab && addr.data &&
        is_network_address(addr.tab, inf->types, t, &r->addr_type_at) != 0) {
      /* Read for a type not told here too: user space keeps it only if it is *networkAddress after all. */
      r->types = inf->types;
      r->addr_len = ps_read_go_str_at_or_at(r->addr, sizeof(r->addr), addr.data + t->network_address, &r->addr_at,
                                            &r->addr_cold_len);
    }
  }

  struct inflight_key k = key_of(g, KAFKA_GO_SEND);
  bpf_map_update_elem(&kafka_go_inflight, &k, inf, BPF_ANY);
  return 0;
}

/* ---- consumer ---- */

/* (*Reader).ReadMessage / FetchMessage entry: RAX=r, RBX/RCX=ctx. The span's parent is known only at RET (the
 * message says which producer), so entry keeps the time, the goroutine's span and the reader's configuration. */
static __always_inline int read_entry(struct pt_regs *ctx, u32 op_kind) {
  u64 g = GO_G(ctx);
  u64 rd = GO_ARG1(ctx);
  struct kafka_go_target *t = ps_target();
  if (!t || !t->reader_ok || rd == 0)
    return 0;
  /* FetchMessage called by ReadMessage: ReadMessage's span covers it. */
  if (op_kind == KAFKA_GO_FETCH) {
    struct inflight_key outer = key_of(g, KAFKA_GO_READ);
    if (bpf_map_lookup_elem(&kafka_go_inflight, &outer))
      return 0;
  }
  end_processing(g);
  struct inflight *inf = scratch();
  if (!inf)
    return 0;
  struct kafka_go_record *r = &inf->rec;
  r->start_ns = bpf_ktime_get_ns();
  r->pid = ps_tgid();
  r->op_kind = op_kind;
  r->batch = 1;
  r->partition = -1;
  r->offset = -1;
  s64 from = op_kind == KAFKA_GO_READ ? t->types_from_read : t->types_from_fetch;
  if (t->types_known)
    inf->types = PT_REGS_IP(ctx) + (u64)from;
  inf->has_local = ps_go_parent(g, GO_ARG3(ctx), &inf->local) == 0;
  u64 cfg = rd + t->reader_config;
  r->topic_len = ps_read_go_str_at(r->topic, sizeof(r->topic), cfg + t->config_topic);
  r->group_len = ps_read_go_str_at(r->group, sizeof(r->group), cfg + t->config_group);
  /* server.address: the first bootstrap broker. */
  struct go_slice brokers = {};
  if (bpf_probe_read_user(&brokers, sizeof(brokers), (const void *)(cfg + t->config_brokers)) == 0 && brokers.len > 0)
    r->addr_len = ps_read_go_str_at(r->addr, sizeof(r->addr), brokers.ptr);
  struct inflight_key k = key_of(g, op_kind);
  bpf_map_update_elem(&kafka_go_inflight, &k, inf, BPF_ANY);
  return 0;
}

SEC("uprobe/kafka_go_ReadMessage")
int uprobe_ReadMessage(struct pt_regs *ctx) {
  return read_entry(ctx, KAFKA_GO_READ);
}

SEC("uprobe/kafka_go_FetchMessage")
int uprobe_FetchMessage(struct pt_regs *ctx) {
  return read_entry(ctx, KAFKA_GO_FETCH);
}

/* ---- every RET ---- */

/* The returned error: its dynamic type's name and, for an integer kind (kafka.Error), its value. */
static __always_inline void read_error(struct kafka_go_record *r, u64 err_tab, u64 err_data, u64 types,
                                       const struct kafka_go_target *t) {
  if (err_tab == 0)
    return;
  r->has_error = 1;
  if (!t)
    return;
  struct ps_go_type ty = {};
  r->err_type_len = ps_go_itab_describe(r->err_type, sizeof(r->err_type), err_tab, types, &t->type, &ty, &r->err_at);
  r->err_kind = ty.kind;
  r->err_tflag = ty.tflag;
  if (r->err_at) {
    r->types = types;
    r->err_code_at = err_data;
  } else if (ty.kind >= 2 && ty.kind <= 6 && err_data) { /* int .. int64: the data word points at the value */
    /* A constant error (return kafka.UnknownTopicOrPartition) points into read-only data, maybe not mapped yet. */
    if (bpf_probe_read_user(&r->err_code, sizeof(r->err_code), (const void *)err_data) != 0)
      r->err_code_at = err_data;
  }
}

SEC("uprobe/kafka_go_WriteMessages_ret")
int uprobe_WriteMessages_ret(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  struct inflight_key k = key_of(g, KAFKA_GO_SEND);
  struct inflight *inf = bpf_map_lookup_elem(&kafka_go_inflight, &k);
  if (!inf)
    return 0;
  struct kafka_go_record *r = &inf->rec;
  if (r->flags & PS_FLAG_SAMPLED) {
    r->end_ns = bpf_ktime_get_ns();
    read_error(r, GO_ARG1(ctx), GO_ARG2(ctx), inf->types, ps_target());
    ps_submit(r, sizeof(*r));
  }
  bpf_map_delete_elem(&kafka_go_inflight, &k);
  return 0;
}

static __always_inline int read_ret(struct pt_regs *ctx, u32 op_kind) {
  u64 g = GO_G(ctx);
  u64 err_tab = GO_ARG1(ctx);
  u64 err_data = GO_ARG2(ctx);
  struct inflight_key k = key_of(g, op_kind);
  struct inflight *inf = bpf_map_lookup_elem(&kafka_go_inflight, &k);
  if (!inf)
    return 0;
  struct kafka_go_record *r = &inf->rec;
  r->end_ns = bpf_ktime_get_ns();
  struct kafka_go_target *t = ps_target();

  /* The parent: the producer of the message when it published itself, else the goroutine's span at entry. */
  struct ps_span_ctx producer = {};
  u8 linked = 0;
  if (t && err_tab == 0) {
    /* SP+8 now, not the entry's: a call that blocked may have had its goroutine's stack moved (grown) since. */
    u64 m = GO_SP(ctx) + 8;
    struct go_slice key = {}, value = {};
    char topic[64] = {};
    u32 topic_len = ps_read_go_str_at(topic, sizeof(topic), m + t->msg_topic);
    bpf_probe_read_user(&key, sizeof(key), (const void *)(m + t->msg_key));
    bpf_probe_read_user(&value, sizeof(value), (const void *)(m + t->msg_value));
    struct kafka_go_msg_key mk = {};
    if (msg_key(&mk, topic, topic_len, &key, &value) == 0) {
      struct ps_span_ctx *p = bpf_map_lookup_elem(&kafka_go_msg_spans, &mk);
      if (p) {
        producer = *p;
        linked = 1;
      }
    }
    if (topic_len) {
      __builtin_memcpy(r->topic, topic, sizeof(topic));
      r->topic_len = topic_len;
    }
    s64 partition = (s64)ps_read_u64(m + t->msg_partition);
    r->partition = (s32)partition;
    r->offset = (s64)ps_read_u64(m + t->msg_offset);
    if (key.ptr) {
      r->has_key = 1;
      r->key_size = key.len > 0xffffffff ? 0xffffffff : (u32)key.len;
      r->key_len = ps_read_go_str(r->key, sizeof(r->key), key.ptr, key.len);
    }
  }
  struct ps_span_ctx *parent = linked ? &producer : inf->has_local ? &inf->local : NULL;
  struct ps_span_ctx sc = {};
  ps_span_begin(parent, &sc);
  if (parent) {
    __builtin_memcpy(r->parent_span_id, parent->span_id, 8);
    r->parent = linked ? KAFKA_GO_PARENT_PRODUCER : KAFKA_GO_PARENT_LOCAL;
  }
  __builtin_memcpy(r->trace_id, sc.trace_id, 16);
  __builtin_memcpy(r->span_id, sc.span_id, 8);
  r->flags = sc.flags;
  /* Sampled or not: what follows inherits the decision, as it would from a header. */
  if (err_tab == 0)
    begin_processing(g, &sc);
  if (r->flags & PS_FLAG_SAMPLED) {
    read_error(r, err_tab, err_data, inf->types, t);
    ps_submit(r, sizeof(*r));
  }
  bpf_map_delete_elem(&kafka_go_inflight, &k);
  return 0;
}

SEC("uprobe/kafka_go_ReadMessage_ret")
int uprobe_ReadMessage_ret(struct pt_regs *ctx) {
  return read_ret(ctx, KAFKA_GO_READ);
}

SEC("uprobe/kafka_go_FetchMessage_ret")
int uprobe_FetchMessage_ret(struct pt_regs *ctx) {
  return read_ret(ctx, KAFKA_GO_FETCH);
}
