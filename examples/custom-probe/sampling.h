/* Sampling decided in BPF, from the sampler the framework injects into every tracing probe's .rodata
 * (TracingConfig.constants in src/probe/TracingConfig.ts). Copy or include this in a tracing probe. */
#pragma once

/* 0 always_on, 1 always_off, 2 traceidratio. */
const volatile u32 ps_sampler_kind = 0;
/* When the span has a parent, the parent's sampled flag decides. */
const volatile bool ps_sampler_parent_based = 1;
/* traceidratio: sampled iff the trace id's last 8 bytes, read big-endian, are below this. */
const volatile u64 ps_sampler_threshold = 0;

static __always_inline bool ps_sampled(bool has_parent, bool parent_sampled, const u8 *trace_id) {
  if (has_parent && ps_sampler_parent_based)
    return parent_sampled;
  if (ps_sampler_kind == 0)
    return true;
  if (ps_sampler_kind == 1)
    return false;
  u64 x = 0;
#pragma unroll
  for (int i = 8; i < 16; i++)
    x = (x << 8) | trace_id[i];
  return x < ps_sampler_threshold;
}
