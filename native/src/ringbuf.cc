// Ring-buffer consumption on the JS thread without blocking it: a uv_poll_t on the ring's epoll fd wakes us when
// the kernel signals, and a uv timer drains records that producers submitted with BPF_RB_NO_WAKEUP. Each drain hands
// JS one batch: the records copied once, straight from the ring into a buffer JS already holds (reused for every
// batch: no allocation per batch or per record), and an offsets array, not one call per record.
//
// The timer backs off while the ring stays empty (doubling up to kIdleDrainMs) and returns to the base interval as
// soon as a drain finds records: an idle agent with a dozen rings wakes a few dozen times a second, not thousands.
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <memory>

#include "classes.h"
#include "common.h"

namespace probescope {

// Returned by the sample callback when a batch is full: libbpf stops consuming (the record is already taken).
constexpr int kBatchFull = -100000;
// Batches handed to JS per wakeup before yielding back to the event loop.
constexpr int kMaxRoundsPerWakeup = 16;
// The longest the drain timer waits while the ring stays empty; a forced wakeup (the BPF side's threshold) still
// comes at once.
constexpr uint32_t kIdleDrainMs = 200;

struct RingState {
  napi_env env = nullptr;
  struct ring_buffer* rb = nullptr;
  uv_poll_t poll;
  uv_timer_t timer;
  bool has_timer = false;
  uint32_t base_ms = 5;
  uint32_t current_ms = 5;
  Napi::FunctionReference callback;
  std::unique_ptr<Napi::AsyncContext> async;
  // The batch: records copied back to back into `data` (a JS Uint8Array's bytes), (offset, length) pairs in
  // `offsets` (a JS Uint32Array's). Both live as long as this state; JS reads them only during the callback.
  Napi::Reference<Napi::Uint8Array> data_ref;
  Napi::Reference<Napi::Uint32Array> offsets_ref;
  uint8_t* data = nullptr;
  size_t capacity = 0;
  size_t used = 0;
  uint32_t* offsets = nullptr;
  uint32_t count = 0;
  uint32_t max_batch = 4096;
  // A record taken from the ring that did not fit the batch: first of the next one (or alone, if it never fits).
  std::vector<uint8_t> holdover;
  bool has_holdover = false;
  double received = 0;
  double batches = 0;
  double callback_errors = 0;
  bool stopped = false;
  bool draining = false;
  bool owner_alive = true;
  int open_handles = 0;
};

static void Append(RingState* s, const uint8_t* p, size_t size) {
  memcpy(s->data + s->used, p, size);
  s->offsets[2 * s->count] = static_cast<uint32_t>(s->used);
  s->offsets[2 * s->count + 1] = static_cast<uint32_t>(size);
  s->count++;
  // Keep each record 8-byte aligned in the batch, as in the ring, so typed views over it stay possible.
  s->used += (size + 7) & ~static_cast<size_t>(7);
}

static int OnSample(void* ctx, void* sample, size_t size) {
  RingState* s = static_cast<RingState*>(ctx);
  const uint8_t* p = static_cast<const uint8_t*>(sample);
  if (s->used + size > s->capacity) {
    s->holdover.assign(p, p + size);
    s->has_holdover = true;
    return kBatchFull;
  }
  Append(s, p, size);
  return s->count >= s->max_batch ? kBatchFull : 0;
}

static void Deliver(RingState* s, Napi::Env env, Napi::Value data, Napi::Value offsets, uint32_t count) {
  s->received += count;
  s->batches += 1;
  try {
    s->callback.MakeCallback(env.Global(), {data, offsets, Napi::Number::New(env, count)}, *s->async);
  } catch (const Napi::Error& e) {
    fprintf(stderr, "probescope ringbuf callback: %s\n", e.Message().c_str());
    // The JS side never throws by design; an exception here must not escape into libuv.
    s->callback_errors += 1;
  }
}

static void Flush(RingState* s) {
  Napi::Env env(s->env);
  Napi::HandleScope scope(env);
  if (s->count > 0) {
    uint32_t count = s->count;
    s->count = 0;
    s->used = 0;
    Deliver(s, env, s->data_ref.Value(), s->offsets_ref.Value(), count);
  }
  if (!s->has_holdover || s->stopped) return;
  s->has_holdover = false;
  if (s->holdover.size() <= s->capacity) {
    Append(s, s->holdover.data(), s->holdover.size());
  } else {
    // Larger than the whole batch buffer: handed over alone, in a buffer of its own.
    Napi::Buffer<uint8_t> one = Napi::Buffer<uint8_t>::Copy(env, s->holdover.data(), s->holdover.size());
    Napi::Uint32Array where = Napi::Uint32Array::New(env, 2);
    where[0] = 0;
    where[1] = static_cast<uint32_t>(s->holdover.size());
    Deliver(s, env, one, where, 1);
  }
  s->holdover.clear();
}

// Consume what the ring holds now; returns the number of records delivered.
static double Drain(RingState* s) {
  if (s->stopped || s->draining || s->rb == nullptr) return 0;
  s->draining = true;
  double before = s->received;
  for (int round = 0; round < kMaxRoundsPerWakeup && !s->stopped; round++) {
    int err = ring_buffer__consume(s->rb);
    bool more = err == kBatchFull || s->has_holdover;
    Flush(s);
    if (!more) break;
  }
  // A holdover kept for the next batch after the last round: deliver it now rather than hold it until next time.
  if (!s->stopped && s->count > 0) Flush(s);
  s->draining = false;
  // stop() was called from inside the JS callback: the ring could not be freed while libbpf was using it.
  if (s->stopped && s->rb != nullptr) {
    ring_buffer__free(s->rb);
    s->rb = nullptr;
  }
  return s->received - before;
}

// After a drain: back off while the ring is empty, return to the base interval once records come.
static void Pace(RingState* s, double delivered, bool from_timer) {
  if (!s->has_timer || s->stopped) return;
  if (delivered > 0) {
    if (s->current_ms == s->base_ms) return;
    s->current_ms = s->base_ms;
    uv_timer_start(&s->timer, [](uv_timer_t* h) {
      RingState* st = static_cast<RingState*>(h->data);
      Pace(st, Drain(st), true);
    }, s->base_ms, s->base_ms);
  } else if (from_timer && s->current_ms < kIdleDrainMs) {
    s->current_ms = std::min(kIdleDrainMs, s->current_ms * 2);
    uv_timer_set_repeat(&s->timer, s->current_ms);
  }
}

static void OnClosed(uv_handle_t* handle) {
  RingState* s = static_cast<RingState*>(handle->data);
  if (--s->open_handles == 0 && !s->owner_alive) delete s;
}

static void StopState(RingState* s) {
  if (s->stopped) return;
  s->stopped = true;
  // uv_close on the poll handle removes the fd from libuv's epoll set before ring_buffer__free closes it.
  uv_close(reinterpret_cast<uv_handle_t*>(&s->poll), OnClosed);
  if (s->has_timer) uv_close(reinterpret_cast<uv_handle_t*>(&s->timer), OnClosed);
  if (!s->draining && s->rb != nullptr) {
    ring_buffer__free(s->rb);
    s->rb = nullptr;
  }
  s->callback.Reset();
}

Napi::FunctionReference* RingBuffer::constructor = nullptr;

Napi::Function RingBuffer::Define(Napi::Env env) {
  return DefineClass(env, "RingBuffer", {
    InstanceMethod<&RingBuffer::Stop>("stop"),
    InstanceMethod<&RingBuffer::Consume>("consume"),
    InstanceMethod<&RingBuffer::Stats>("stats"),
  });
}

RingBuffer::RingBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingBuffer>(info) {}

RingBuffer::~RingBuffer() {
  if (state_ == nullptr) return;
  StopState(state_);
  state_->owner_alive = false;
  if (state_->open_handles == 0) delete state_;
  state_ = nullptr;
}

void RingBuffer::Start(Napi::Env env, int map_fd, Napi::Function callback, uint32_t drain_ms, uint32_t max_batch,
                       uint32_t batch_bytes) {
  auto s = std::make_unique<RingState>();
  s->env = env;
  s->max_batch = max_batch > 0 ? max_batch : 1;
  s->capacity = std::max<uint32_t>(batch_bytes, 4096);
  // Allocated once, owned by JS (kept alive by the references): the batch's bytes and its offsets.
  Napi::Uint8Array data = Napi::Uint8Array::New(env, s->capacity);
  Napi::Uint32Array offsets = Napi::Uint32Array::New(env, 2 * static_cast<size_t>(s->max_batch));
  s->data = data.Data();
  s->offsets = offsets.Data();
  s->data_ref = Napi::Persistent(data);
  s->offsets_ref = Napi::Persistent(offsets);
  LogReset();
  s->rb = ring_buffer__new(map_fd, OnSample, s.get(), nullptr);
  if (s->rb == nullptr) throw MakeError(env, "ringBuffer", errno ? errno : EINVAL, "ring_buffer__new");
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    ring_buffer__free(s->rb);
    throw MakeError(env, "ringBuffer", EINVAL, "no libuv loop");
  }
  int rc = uv_poll_init(loop, &s->poll, ring_buffer__epoll_fd(s->rb));
  if (rc != 0) {
    ring_buffer__free(s->rb);
    throw MakeError(env, "ringBuffer", -rc, "uv_poll_init");
  }
  s->poll.data = s.get();
  s->open_handles++;
  s->callback = Napi::Persistent(callback);
  s->async = std::make_unique<Napi::AsyncContext>(env, "probescope.ringbuf");
  uv_poll_start(&s->poll, UV_READABLE, [](uv_poll_t* h, int status, int events) {
    RingState* st = static_cast<RingState*>(h->data);
    Pace(st, Drain(st), false);
  });
  if (drain_ms > 0) {
    uv_timer_init(loop, &s->timer);
    s->timer.data = s.get();
    s->has_timer = true;
    s->base_ms = drain_ms;
    s->current_ms = drain_ms;
    s->open_handles++;
    uv_timer_start(&s->timer, [](uv_timer_t* h) {
      RingState* st = static_cast<RingState*>(h->data);
      Pace(st, Drain(st), true);
    }, drain_ms, drain_ms);
  }
  state_ = s.release();
}

Napi::Value RingBuffer::Stop(const Napi::CallbackInfo& info) {
  if (state_ != nullptr) StopState(state_);
  return info.Env().Undefined();
}

// consume(): drain synchronously now; returns the number of records delivered to the callback.
Napi::Value RingBuffer::Consume(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), state_ ? Drain(state_) : 0);
}

// stats(): { received, batches, callbackErrors, drainMs (the timer's interval now) }
Napi::Value RingBuffer::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("received", state_ ? state_->received : 0);
  out.Set("batches", state_ ? state_->batches : 0);
  out.Set("callbackErrors", state_ ? state_->callback_errors : 0);
  out.Set("drainMs", state_ ? state_->current_ms : 0);
  return out;
}

}  // namespace probescope
