// Shared declarations of the probescope native addon: error helpers and the libbpf log capture.
#pragma once

#include <napi.h>

#include <functional>
#include <string>
#include <thread>

namespace probescope {

// Start capturing libbpf's log output for one operation (clears what the previous operation left).
void LogReset();
// The last `max` bytes libbpf printed since LogReset.
std::string LogTail(size_t max = 8192);
void InstallLogCapture();

// Symbolic name of an errno (e.g. "ENOENT"), including libbpf's own codes (4000+).
std::string ErrnoName(int err);

// A JS Error carrying op, errno, code and libbpf's log tail; `err` is a positive errno.
Napi::Error MakeError(Napi::Env env, const std::string& op, int err, const std::string& detail);
// The same with a log captured elsewhere (on the thread that did the work).
Napi::Error MakeErrorWithLog(Napi::Env env, const std::string& op, int err, const std::string& detail,
                             const std::string& log);

// Runs `work` on its own thread, then settles a promise on the JS thread with `settle(env, result)`; a Napi::Error
// thrown by `settle` rejects it. The thread-safe function keeps the event loop alive until the job has settled, so
// a shutdown that waits for it does wait.
template <typename R>
struct Job {
  Napi::Promise::Deferred deferred;
  std::function<R()> work;
  std::function<Napi::Value(Napi::Env, R&)> settle;
  R result{};
};

template <typename R>
Napi::Promise OffThread(Napi::Env env, const char* name, std::function<R()> work,
                        std::function<Napi::Value(Napi::Env, R&)> settle) {
  auto* job = new Job<R>{Napi::Promise::Deferred::New(env), std::move(work), std::move(settle)};
  Napi::Promise promise = job->deferred.Promise();
  auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), name, 0, 1);
  std::thread([job, tsfn]() mutable {
    job->result = job->work();
    napi_status status = tsfn.BlockingCall(job, [](Napi::Env env, Napi::Function, Job<R>* j) {
      try {
        j->deferred.Resolve(j->settle(env, j->result));
      } catch (const Napi::Error& e) {
        j->deferred.Reject(e.Value());
      }
      delete j;
    });
    // The environment is going away (process exit): nobody is left to settle, and the kernel frees what we held.
    if (status != napi_ok) delete job;
    tsfn.Release();
  }).detach();
  return promise;
}

}  // namespace probescope
