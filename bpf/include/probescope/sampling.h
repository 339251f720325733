/* Head sampling decided in BPF, so unsampled spans cost no ring-buffer record and no user-space work.
 *
 * The sampler is the probe API's TracingConfig (OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG), pushed as `.rodata`
 * constants when an instrument probe loads (src/probe/TracingConfig.ts `constants`). The defaults below are
 * parentbased_always_on, OpenTelemetry's default.
 *
 * Needs common.h and go_context.h first. */
#pragma once

#define PS_SAMPLER_ALWAYS_ON 0
#define PS_SAMPLER_ALWAYS_OFF 1
#define PS_SAMPLER_TRACEIDRATIO 2

/* What to do for a root span. */
const volatile u32 ps_sampler_kind = PS_SAMPLER_ALWAYS_ON;
/* Follow the parent's sampled flag when there is a parent (local or remote). */
const volatile bool ps_sampler_parent_based = 1;
/* traceidratio: sampled when the trace id's last 8 bytes, read as a big-endian u64, are below this. */
const volatile u64 ps_sampler_threshold = 0;

static __always_inline bool ps_ratio_sampled(const u8 *trace_id) {
  u64 x = 0;
  for (int i = 8; i < 16; i++)
    x = (x << 8) | trace_id[i];
  return x < ps_sampler_threshold;
}

/* Decide for a new span. `parent` is NULL for a root span; otherwise its flags carry the parent's decision. */
static __always_inline bool ps_should_sample(const u8 *trace_id, const struct ps_span_ctx *parent) {
  if (parent && ps_sampler_parent_based)
    return (parent->flags & PS_FLAG_SAMPLED) != 0;
  if (ps_sampler_kind == PS_SAMPLER_ALWAYS_OFF)
    return false;
  if (ps_sampler_kind == PS_SAMPLER_TRACEIDRATIO)
    return ps_ratio_sampled(trace_id);
  return true;
}

/*
 * A new span's context: the parent's trace (a new trace for a root, `parent` NULL), a fresh span id, the parent's
 * other flag bits, and the sampled flag as this sampler decides. Every probe that starts spans starts them so.
 */
static __always_inline void ps_span_begin(const struct ps_span_ctx *parent, struct ps_span_ctx *sc) {
  if (parent)
    __builtin_memcpy(sc->trace_id, parent->trace_id, 16);
  else
    ps_gen_trace_id(sc->trace_id);
  ps_gen_span_id(sc->span_id);
  sc->flags = (parent ? parent->flags : 0) & ~PS_FLAG_SAMPLED;
  if (ps_should_sample(sc->trace_id, parent))
    sc->flags |= PS_FLAG_SAMPLED;
}
