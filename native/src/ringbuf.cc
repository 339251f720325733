// Ring-buffer consumption on the JS thread without blocking it. A uv timer drains the ring every `drain_ms` while
// records come: the BPF side submits them without a wakeup (bpf/include/probescope/events.h), so batches stay large.
// A record that makes the unread data cross the wakeup threshold forces a wakeup, and that one is drained at once.
// While the ring stays empty the timer backs off, doubling up to kIdleDrainMs, and it returns to `drain_ms` as soon
// as a drain finds records. Each drain hands JS one batch: the records copied once, straight from the ring into a
// buffer JS already holds (reused for every batch: no allocation per batch or per record), and an offsets array.
//
// Why the timer never stops (session 18 tried it): the only way to learn of the first record into an idle ring is a
// kernel wakeup at that record, and a wakeup from inside a probe lands in the traced program's request path. It
// raises an IPI and may preempt a thread of the traced program for the agent on a small machine. The gRPC kernel
// test caught it: a server span that ends after its client's, about one run in two. The drain timer's ticks do not
// depend on what the traced program is doing.
//
// A ring whose producers wake the reader on every record into a caught-up ring (wakeup threshold 0: setWakeupBytes(0))
// has no ticks at all: no record can wait for one, so they would only wake an idle agent. Discovery's exec/exit ring
// is one (records from the exec and exit paths, not from a traced program's requests). A wakeup drains at once unless
// the last drain that delivered records was less than a window ago (kStormStartMs at first, or `drain_ms` if shorter); then the drain waits for the window's end, and
// until it runs the ring stays unread, so the kernel (which wakes only a caught-up reader) does not wake us again. The
// window doubles at each such wait, up to kStormDrainMs (or `drain_ms` if longer), and is back to its start after a quiet window: a storm of
// execs (a build, a test suite) costs about two wakeups per 160 ms, not one per exec nor one per `drain_ms`. The timer
// is kept for that, as a one-shot: also one drain when the threshold is set (records that came before woke no one),
// and one at once after a drain cut short by kMaxRoundsPerWakeup (records left behind wake no one either).
//
// The wakeup comes through an epoll set of our own, with the ring registered edge-triggered: libbpf's set is
// level-triggered, so a poll handle on it fires on every loop iteration while records wait for the timer.
//
// The ring's data is mapped (libbpf's ring_buffer__new) at the first drain that finds something in it, not at start:
// the kernel maps every data page at once, twice over, so a mapped 1 MiB ring is 2 MiB of the agent's RSS whether a
// record ever comes or not, and most probes of a process see no traffic (a client probe in a server, a driver the
// program links but does not use). Until then only the two position pages are mapped, and they say whether to map.
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "classes.h"
#include "common.h"

namespace probescope {

// Returned by the sample callback when a batch is full: libbpf stops consuming (the record is already taken).
constexpr int kBatchFull = -100000;
// Batches handed to JS per wakeup before yielding back to the event loop.
constexpr int kMaxRoundsPerWakeup = 16;
// The longest the drain timer waits while the ring stays empty: a record into an idle ring waits at most this long.
// 1 s: the spans it carries wait for the span batch's schedule delay anyway (5 s by default). A forced wakeup (the
// threshold) still comes at once.
constexpr uint32_t kIdleDrainMs = 1000;
// With no ticks (threshold 0): the longest a record waits while records keep coming, the window's upper bound.
constexpr uint32_t kStormDrainMs = 160;
// With no ticks: the window's start, at most. Not the probes' drain interval (50 ms by default, for rings drained by
// their ticks): a burst of execs would see its second process 50 ms late, after a short-lived one has ended.
constexpr uint32_t kStormStartMs = 20;
// The BPF side's default wakeup threshold (ps_wakeup_bytes in events.h), until JS says otherwise (setWakeupBytes).
constexpr uint64_t kDefaultWakeupBytes = 256 * 1024;

struct RingState {
  napi_env env = nullptr;
  // The ring's map (the object's descriptor); its data mapped through `rb` once a drain first finds something to read
  // (nullptr until then).
  int map_fd = -1;
  struct ring_buffer* rb = nullptr;
  // Why mapping the data failed, said once (the drains go on trying: the kernel counts what the full ring drops).
  bool map_failure_said = false;
  uv_poll_t poll;
  uv_timer_t timer;
  bool has_timer = false;
  // wakeup_bytes 0: the timer does not tick (see the top of this file).
  bool ticks_off = false;
  // When the last drain ran (uv_now, ms): with no ticks, a wakeup sooner than base_ms after it waits for the timer.
  uint64_t last_drain = 0;
  // With no ticks, how long after a drain the next one waits: base_ms, doubling while records keep coming.
  uint32_t window_ms = 5;
  // Where the window starts: the drain interval, at most kStormStartMs.
  uint32_t window_base_ms = 5;
  uint32_t base_ms = 5;
  uint32_t current_ms = 5;
  // Ours, the ring's fd in it edge-triggered: readable once per kernel wakeup of the ring.
  int epoll_fd = -1;
  // The ring's consumer and producer pages, read-only: how much unread data the ring holds, without a syscall.
  void* positions = MAP_FAILED;
  size_t page_size = 0;
  // A wakeup finding at least this much unread data is the BPF side's threshold: drained at once.
  uint64_t wakeup_bytes = kDefaultWakeupBytes;
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
  double timer_wakeups = 0;
  double ring_wakeups = 0;
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

// Unread bytes in the ring (records reserved but not yet committed included): producer minus consumer position.
static uint64_t Unread(RingState* s) {
  if (s->positions == MAP_FAILED) return 0;
  auto* base = static_cast<uint8_t*>(s->positions);
  uint64_t consumer = __atomic_load_n(reinterpret_cast<uint64_t*>(base), __ATOMIC_ACQUIRE);
  uint64_t producer = __atomic_load_n(reinterpret_cast<uint64_t*>(base + s->page_size), __ATOMIC_ACQUIRE);
  return producer - consumer;
}

// Maps the ring's data when it first holds something to read; whether it is mapped.
static bool Mapped(RingState* s) {
  if (s->rb != nullptr) return true;
  if (s->stopped || Unread(s) == 0) return false;
  s->rb = ring_buffer__new(s->map_fd, OnSample, s, nullptr);
  int err = errno;
  if (s->rb == nullptr && !s->map_failure_said) {
    s->map_failure_said = true;
    fprintf(stderr, "probescope ringbuf: mapping the ring's data failed: %s\n", strerror(err));
  }
  return s->rb != nullptr;
}

// Consume what the ring holds now; returns the number of records delivered.
static double Drain(RingState* s) {
  if (s->stopped || s->draining || !Mapped(s)) return 0;
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

static void OnTimer(uv_timer_t* h);

// After a drain: back off while the ring is empty, return to the base interval once records come.
static void Pace(RingState* s, double delivered, bool from_timer) {
  if (!s->has_timer || s->stopped) return;
  if (s->ticks_off) {
    // Only a drain that delivered starts a window: one that found the ring empty (the drain when the threshold is
    // set, a wakeup for a record not yet committed) must not hold back the next record's wakeup for a window.
    if (delivered > 0) s->last_drain = uv_now(s->timer.loop);
    // A drain that delivered and still leaves records unread was cut short: go on at once, as no wakeup will come.
    // (A record reserved but not yet committed counts as unread too: its commit wakes us, and this drain finds none.)
    if (delivered > 0 && Unread(s) > 0) uv_timer_start(&s->timer, OnTimer, 0, 0);
    return;
  }
  if (delivered > 0) {
    if (s->current_ms == s->base_ms) return;
    s->current_ms = s->base_ms;
    uv_timer_start(&s->timer, OnTimer, s->base_ms, s->base_ms);
  } else if (from_timer && s->current_ms < kIdleDrainMs) {
    s->current_ms = std::min(kIdleDrainMs, s->current_ms * 2);
    uv_timer_set_repeat(&s->timer, s->current_ms);
  }
}

static void OnTimer(uv_timer_t* h) {
  RingState* s = static_cast<RingState*>(h->data);
  s->timer_wakeups += 1;
  Pace(s, Drain(s), true);
}

// The kernel woke the ring: the threshold crossed (or, with ps_wakeup_bytes 0, a record into an emptied ring).
static void OnWakeup(uv_poll_t* h, int status, int events) {
  RingState* s = static_cast<RingState*>(h->data);
  // Take the edge off our epoll set (edge-triggered: it stays quiet until the kernel's next wakeup).
  struct epoll_event ev[4];
  while (epoll_wait(s->epoll_fd, ev, 4, 0) == 4) {
  }
  if (s->stopped) return;
  s->ring_wakeups += 1;
  if (s->has_timer && s->ticks_off) {
    // A drain already waiting (the ring unread until then) takes this record too.
    if (uv_is_active(reinterpret_cast<uv_handle_t*>(&s->timer))) return;
    uint64_t since = uv_now(s->timer.loop) - s->last_drain;
    if (since < s->window_ms) {
      uv_timer_start(&s->timer, OnTimer, s->window_ms - since, 0);
      // Records keep coming: the next wait is longer.
      s->window_ms = std::min(std::max(kStormDrainMs, s->base_ms), s->window_ms * 2);
      return;
    }
    // Quiet for a whole window: back to the shortest.
    s->window_ms = s->window_base_ms;
    Pace(s, Drain(s), false);
    return;
  }
  // Without a timer every wakeup drains; with one, only a ring past the threshold (the timer takes the rest).
  if (!s->has_timer || Unread(s) >= s->wakeup_bytes) Pace(s, Drain(s), false);
}

// Threshold 0 stops the ticks, any other restores them at the base interval.
static void SetTicks(RingState* s) {
  if (!s->has_timer || s->stopped) return;
  bool off = s->wakeup_bytes == 0;
  if (off == s->ticks_off) return;
  s->ticks_off = off;
  if (off) {
    s->current_ms = 0;
    s->window_ms = s->window_base_ms;
    // Records already in the ring woke no one (before this reader, or below the old threshold): one drain for them.
    uv_timer_start(&s->timer, OnTimer, 0, 0);
  } else {
    s->current_ms = s->base_ms;
    uv_timer_start(&s->timer, OnTimer, s->base_ms, s->base_ms);
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
  // uv_close has taken the fd out of libuv's epoll set already.
  if (s->epoll_fd >= 0) close(s->epoll_fd);
  s->epoll_fd = -1;
  if (s->positions != MAP_FAILED) munmap(s->positions, 2 * s->page_size);
  s->positions = MAP_FAILED;
  // A stopped reader maps nothing more (the descriptor is the object's, closed with it).
  s->map_fd = -1;
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
    InstanceMethod<&RingBuffer::SetWakeupBytes>("setWakeupBytes"),
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
  // The data is mapped at the first drain with something to read (see the top of this file), through the object's
  // descriptor: a reader is stopped before its object closes (BpfLive's scopes), and a stopped reader maps nothing.
  // The caller has checked that the map is a ring buffer.
  s->map_fd = map_fd;
  uv_loop_t* loop = nullptr;
  auto fail = [&](int err, const char* what) {
    if (s->epoll_fd >= 0) close(s->epoll_fd);
    if (s->positions != MAP_FAILED) munmap(s->positions, 2 * s->page_size);
    return MakeError(env, "ringBuffer", err, what);
  };
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) throw fail(EINVAL, "no libuv loop");
  s->page_size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  // The consumer page, then the producer page: read-only, as the kernel allows past the first page.
  s->positions = mmap(nullptr, 2 * s->page_size, PROT_READ, MAP_SHARED, s->map_fd, 0);
  if (s->positions == MAP_FAILED) throw fail(errno, "mmap of the ring's positions");
  s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (s->epoll_fd < 0) throw fail(errno, "epoll_create1");
  struct epoll_event ev = {};
  ev.events = EPOLLIN | EPOLLET;
  if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->map_fd, &ev) != 0) throw fail(errno, "epoll_ctl");
  int rc = uv_poll_init(loop, &s->poll, s->epoll_fd);
  if (rc != 0) throw fail(-rc, "uv_poll_init");
  s->poll.data = s.get();
  s->open_handles++;
  s->callback = Napi::Persistent(callback);
  s->async = std::make_unique<Napi::AsyncContext>(env, "probescope.ringbuf");
  uv_poll_start(&s->poll, UV_READABLE, OnWakeup);
  if (drain_ms > 0) {
    uv_timer_init(loop, &s->timer);
    s->timer.data = s.get();
    s->has_timer = true;
    s->base_ms = drain_ms;
    s->window_base_ms = std::min(drain_ms, kStormStartMs);
    s->window_ms = s->window_base_ms;
    s->current_ms = drain_ms;
    s->open_handles++;
    uv_timer_start(&s->timer, OnTimer, drain_ms, drain_ms);
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

// stats(): { received, batches, callbackErrors, drainMs (the timer's interval now; 0: no ticks), timerWakeups (drains
// the timer ran), ringWakeups (kernel wakeups of the reader) }
Napi::Value RingBuffer::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("received", state_ ? state_->received : 0);
  out.Set("batches", state_ ? state_->batches : 0);
  out.Set("callbackErrors", state_ ? state_->callback_errors : 0);
  out.Set("drainMs", state_ ? state_->current_ms : 0);
  out.Set("timerWakeups", state_ ? state_->timer_wakeups : 0);
  out.Set("ringWakeups", state_ ? state_->ring_wakeups : 0);
  return out;
}

// setWakeupBytes(n): the threshold the ring's producer forces a wakeup at (its ps_wakeup_bytes): a wakeup finding
// that much unread data is drained at once rather than on the timer. Infinity: never at once. 0: the producer wakes
// the reader at every record into a caught-up ring, so every wakeup drains and the timer stops ticking.
Napi::Value RingBuffer::SetWakeupBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "setWakeupBytes: expected a number");
  double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 0)) throw Napi::RangeError::New(env, "setWakeupBytes: expected bytes >= 0");
  if (state_ != nullptr) {
    state_->wakeup_bytes = n >= 18446744073709551615.0 ? UINT64_MAX : static_cast<uint64_t>(n);
    SetTicks(state_);
  }
  return env.Undefined();
}

}  // namespace probescope
