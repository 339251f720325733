// Giving way to other programs: every thread of this process to SCHED_IDLE, with a guard thread that takes the usual
// policy back the moment the main thread waits too long for a CPU. The CLI's governor gives way with it unless told
// otherwise (PROBESCOPE_GIVE_WAY=nice, src/cli/Priority.ts).
//
// Why SCHED_IDLE and not a nice value: under EEVDF a running SCHED_OTHER task keeps the CPU for its protected slice
// (about 1.4 ms here) even when a task of far greater weight wakes up, so a nice-10 agent still delays the traced
// program's requests by up to a slice. A task with the idle policy is preempted by any SCHED_OTHER task at its wakeup,
// and never preempts one at its own (docs/benchmarks.md, "Giving way with SCHED_IDLE (session 23)").
//
// Why a guard thread: an idle-policy task weighs 3 against a nice-0 task's 1024. On a host whose CPUs fill up, the
// agent's own JavaScript (its governor included) may not run for hundreds of milliseconds, while its rings fill. The
// guard stays SCHED_OTHER and sleeps; every `interval_ms` it reads the main thread's schedstat, and when that thread
// waited more than `behind` of the interval it puts every thread back at SCHED_OTHER and the usual nice value, then
// ends. JS learns of it from schedGuardFired().
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "common.h"

namespace probescope {

namespace {

#ifndef SCHED_IDLE
#define SCHED_IDLE 5
#endif

// struct sched_attr, the first version (48 bytes): glibc 2.36 has no wrapper for sched_setattr.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};

// 0, or the errno.
int SetPolicy(pid_t tid, int policy, int nice) {
  SchedAttr attr{};
  attr.size = sizeof(attr);
  attr.sched_policy = static_cast<uint32_t>(policy);
  attr.sched_nice = nice;
  return syscall(SYS_sched_setattr, tid, &attr, 0) == 0 ? 0 : errno;
}

// Every thread of this process but `except` to `policy` and `nice`: 0, or the first errno other than ESRCH (a thread
// that exited meanwhile). Listed twice: a thread made during the first listing takes its creator's old policy.
int SetAll(int policy, int nice, pid_t except) {
  for (int pass = 0; pass < 2; pass++) {
    DIR* dir = opendir("/proc/self/task");
    if (dir == nullptr) return errno;
    while (struct dirent* entry = readdir(dir)) {
      pid_t tid = static_cast<pid_t>(atoi(entry->d_name));
      if (tid <= 0 || tid == except) continue;
      int err = SetPolicy(tid, policy, nice);
      if (err == ESRCH) continue;
      if (err != 0) {
        closedir(dir);
        return err;
      }
    }
    closedir(dir);
  }
  return 0;
}

// The ns a thread has waited on a run queue, from its schedstat ("<ns on a CPU> <ns waiting> <slices>") read through
// `fd` kept open: one pread per sample; false when unreadable.
bool ReadWait(int fd, uint64_t* wait) {
  char buf[96];
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return false;
  buf[n] = '\0';
  char* end = nullptr;
  strtoull(buf, &end, 10);
  if (end == buf || *end != ' ') return false;
  const char* second = end + 1;
  *wait = strtoull(second, &end, 10);
  return end != second;
}

struct Guard {
  std::mutex mutex;
  std::condition_variable wake;
  std::thread thread;
  bool running = false;
  bool stop = false;
  pid_t tid = 0;
  // Set by the guard when it took the usual policy back: the sample that made it (ns), kept until read.
  bool fired = false;
  uint64_t fired_wait_ns = 0;
  uint64_t fired_wall_ns = 0;
};

// Never destroyed: a joinable std::thread destroyed at exit would terminate the process.
Guard& guard = *new Guard();

void GuardLoop(pid_t main_tid, double behind, uint32_t interval_ms, int usual) {
  {
    std::lock_guard<std::mutex> lock(guard.mutex);
    guard.tid = static_cast<pid_t>(syscall(SYS_gettid));
  }
  guard.wake.notify_all();
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", static_cast<int>(main_tid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  uint64_t wait0 = 0;
  // Unreadable (no schedstat in this kernel): no guard; the governor, which reads the same file, does not run either.
  if (fd < 0 || !ReadWait(fd, &wait0)) {
    if (fd >= 0) close(fd);
    return;
  }
  auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(guard.mutex);
  while (!guard.stop) {
    guard.wake.wait_for(lock, std::chrono::milliseconds(interval_ms));
    if (guard.stop) break;
    uint64_t wait = 0;
    if (!ReadWait(fd, &wait)) break;
    auto t = std::chrono::steady_clock::now();
    uint64_t wall = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t - t0).count());
    uint64_t waited = wait - wait0;
    if (wall > 0 && static_cast<double>(waited) > behind * static_cast<double>(wall)) {
      // Falling behind: every thread back to the usual policy, then this guard is done.
      SetAll(SCHED_OTHER, usual, 0);
      guard.fired = true;
      guard.fired_wait_ns = waited;
      guard.fired_wall_ns = wall;
      break;
    }
    wait0 = wait;
    t0 = t;
  }
  close(fd);
}

// Stops the guard thread and waits for it.
void StopGuard() {
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(guard.mutex);
    if (!guard.running) return;
    guard.stop = true;
    guard.running = false;
    thread = std::move(guard.thread);
  }
  guard.wake.notify_all();
  if (thread.joinable()) thread.join();
}

}  // namespace

// schedGiveWay(mainTid, behind, intervalMs, usualNice): every thread but a new guard to SCHED_IDLE (see the top of
// this file). Throws with the errno when a thread cannot be set (every thread is then back at SCHED_OTHER).
Napi::Value SchedGiveWay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  pid_t main_tid = static_cast<pid_t>(info[0].As<Napi::Number>().Int32Value());
  double behind = info[1].As<Napi::Number>().DoubleValue();
  uint32_t interval_ms = info[2].As<Napi::Number>().Uint32Value();
  int usual = info[3].As<Napi::Number>().Int32Value();
  StopGuard();
  {
    std::unique_lock<std::mutex> lock(guard.mutex);
    guard.stop = false;
    guard.fired = false;
    guard.tid = 0;
    guard.running = true;
    // Made before the others change, so it keeps the policy of its creator (SCHED_OTHER).
    guard.thread = std::thread(GuardLoop, main_tid, behind, interval_ms, usual);
    guard.wake.wait(lock, [] { return guard.tid != 0; });
  }
  int err = SetAll(SCHED_IDLE, usual, guard.tid);
  if (err != 0) {
    StopGuard();
    SetAll(SCHED_OTHER, usual, 0);
    throw MakeError(env, "sched_setattr", err, "SCHED_IDLE");
  }
  return env.Undefined();
}

// schedTakeBack(usualNice): stops the guard; every thread to SCHED_OTHER at `usualNice`. Throws with the errno.
Napi::Value SchedTakeBack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int usual = info[0].As<Napi::Number>().Int32Value();
  StopGuard();
  int err = SetAll(SCHED_OTHER, usual, 0);
  if (err != 0) throw MakeError(env, "sched_setattr", err, "SCHED_OTHER");
  return env.Undefined();
}

// schedGuardFired(): undefined, or { waitedNs, wallNs } of the sample at which the guard took the usual policy back
// (once: reading it clears it).
Napi::Value SchedGuardFired(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(guard.mutex);
  if (!guard.fired) return env.Undefined();
  guard.fired = false;
  Napi::Object out = Napi::Object::New(env);
  out.Set("waitedNs", Napi::Number::New(env, static_cast<double>(guard.fired_wait_ns)));
  out.Set("wallNs", Napi::Number::New(env, static_cast<double>(guard.fired_wall_ns)));
  return out;
}

}  // namespace probescope
