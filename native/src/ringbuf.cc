// Ring-buffer consumption on the JS thread without blocking it: a uv_poll_t on the ring's epoll fd wakes us when
// the kernel signals, and a short uv timer drains records that producers submitted with BPF_RB_NO_WAKEUP. Each
// drain hands JS one Buffer plus an offsets array, not one call per record.
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <memory>

#include "classes.h"
#include "common.h"

namespace probescope {

// Returned by the sample callback when a batch is full: libbpf stops consuming (the record is already taken).
constexpr int kBatchFull = -100000;
// Batches handed to JS per wakeup before yielding back to the event loop.
constexpr int kMaxRoundsPerWakeup = 16;

struct RingState {
  napi_env env = nullptr;
  struct ring_buffer* rb = nullptr;
  uv_poll_t poll;
  uv_timer_t timer;
  bool has_timer = false;
  Napi::FunctionReference callback;
  std::unique_ptr<Napi::AsyncContext> async;
  std::vector<uint8_t> data;
  std::vector<uint32_t> offsets;  // (offset, length) pairs into data
  uint32_t max_batch = 4096;
  double received = 0;
  double batches = 0;
  double callback_errors = 0;
  bool stopped = false;
  bool draining = false;
  bool owner_alive = true;
  int open_handles = 0;
};

static int OnSample(void* ctx, void* sample, size_t size) {
  RingState* s = static_cast<RingState*>(ctx);
  s->offsets.push_back(static_cast<uint32_t>(s->data.size()));
  s->offsets.push_back(static_cast<uint32_t>(size));
  const uint8_t* p = static_cast<const uint8_t*>(sample);
  s->data.insert(s->data.end(), p, p + size);
  return s->offsets.size() / 2 >= s->max_batch ? kBatchFull : 0;
}

static void Flush(RingState* s) {
  size_t count = s->offsets.size() / 2;
  if (count == 0) return;
  Napi::Env env(s->env);
  Napi::HandleScope scope(env);
  Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::Copy(env, s->data.data(), s->data.size());
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, s->offsets.size() * sizeof(uint32_t));
  memcpy(ab.Data(), s->offsets.data(), s->offsets.size() * sizeof(uint32_t));
  Napi::Uint32Array offsets = Napi::Uint32Array::New(env, s->offsets.size(), ab, 0);
  s->data.clear();
  s->offsets.clear();
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

// Consume what the ring holds now; returns the number of records delivered.
static double Drain(RingState* s) {
  if (s->stopped || s->draining || s->rb == nullptr) return 0;
  s->draining = true;
  double before = s->received;
  for (int round = 0; round < kMaxRoundsPerWakeup && !s->stopped; round++) {
    int err = ring_buffer__consume(s->rb);
    Flush(s);
    if (err != kBatchFull) break;
  }
  s->draining = false;
  // stop() was called from inside the JS callback: the ring could not be freed while libbpf was using it.
  if (s->stopped && s->rb != nullptr) {
    ring_buffer__free(s->rb);
    s->rb = nullptr;
  }
  return s->received - before;
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

void RingBuffer::Start(Napi::Env env, int map_fd, Napi::Function callback, uint32_t drain_ms, uint32_t max_batch) {
  auto s = std::make_unique<RingState>();
  s->env = env;
  s->max_batch = max_batch > 0 ? max_batch : 1;
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
    Drain(static_cast<RingState*>(h->data));
  });
  if (drain_ms > 0) {
    uv_timer_init(loop, &s->timer);
    s->timer.data = s.get();
    s->has_timer = true;
    s->open_handles++;
    uv_timer_start(&s->timer, [](uv_timer_t* h) { Drain(static_cast<RingState*>(h->data)); }, drain_ms, drain_ms);
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

// stats(): { received, batches, callbackErrors }
Napi::Value RingBuffer::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("received", state_ ? state_->received : 0);
  out.Set("batches", state_ ? state_->batches : 0);
  out.Set("callbackErrors", state_ ? state_->callback_errors : 0);
  return out;
}

}  // namespace probescope
