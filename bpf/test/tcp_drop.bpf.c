/* Test helper for the TCP metrics kernel tests: loses exactly `drop_count` TCP segments that carry data, on their
 * way into the sockets of one cgroup (cgroup_skb/ingress, attached by the test to a cgroup holding the receiving
 * process). The sender sees the segment as sent and unacknowledged, so it retransmits it: a deterministic data
 * retransmission with no traffic shaping (no sch_netem, nft or iptables needed). IPv4 only. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

const volatile u32 drop_count = 1;

/* [0]: segments dropped so far. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, u32);
} dropped SEC(".maps");

SEC("cgroup_skb/ingress")
int drop_data(struct __sk_buff *skb) {
  if (skb->protocol != bpf_htons(0x0800))
    return 1;
  struct iphdr ip;
  if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) != 0 || ip.protocol != IPPROTO_TCP)
    return 1;
  u32 ihl = (u32)ip.ihl * 4;
  struct tcphdr tcp;
  if (bpf_skb_load_bytes(skb, ihl, &tcp, sizeof(tcp)) != 0)
    return 1;
  u32 total = bpf_ntohs(ip.tot_len);
  u32 headers = ihl + (u32)tcp.doff * 4;
  if (total <= headers)
    return 1;
  u32 zero = 0;
  u32 *n = bpf_map_lookup_elem(&dropped, &zero);
  if (!n || *n >= drop_count)
    return 1;
  *n += 1;
  return 0;
}
