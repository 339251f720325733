#include "common.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <mutex>

namespace probescope {

namespace {

// libbpf prints from the thread that calls it: each thread keeps its own log, so an object loaded off the JS thread
// (loadAsync) and an operation on the JS thread meanwhile do not mix their logs. The lock guards libbpf logging from
// a thread it started itself, if it ever does.
std::mutex log_mutex;
thread_local std::string log_buffer;
constexpr size_t kLogCap = 256 * 1024;

int CapturePrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char stack[4096];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(stack, sizeof(stack), fmt, copy);
  va_end(copy);
  if (n < 0) return 0;
  std::string line;
  if (static_cast<size_t>(n) < sizeof(stack)) {
    line.assign(stack, n);
  } else {
    line.resize(n + 1);
    vsnprintf(&line[0], n + 1, fmt, args);
    line.resize(n);
  }
  std::lock_guard<std::mutex> lock(log_mutex);
  log_buffer += line;
  // The verifier log can be megabytes; only its tail is useful, so keep the buffer bounded.
  if (log_buffer.size() > kLogCap) log_buffer.erase(0, log_buffer.size() - kLogCap / 2);
  return 0;
}

}  // namespace

void InstallLogCapture() { libbpf_set_print(CapturePrint); }

void LogReset() {
  std::lock_guard<std::mutex> lock(log_mutex);
  log_buffer.clear();
}

std::string LogTail(size_t max) {
  std::lock_guard<std::mutex> lock(log_mutex);
  if (log_buffer.size() <= max) return log_buffer;
  return log_buffer.substr(log_buffer.size() - max);
}

std::string ErrnoName(int err) {
  switch (err) {
    case LIBBPF_ERRNO__LIBELF: return "LIBBPF_ERRNO__LIBELF";
    case LIBBPF_ERRNO__FORMAT: return "LIBBPF_ERRNO__FORMAT";
    case LIBBPF_ERRNO__KVERSION: return "LIBBPF_ERRNO__KVERSION";
    case LIBBPF_ERRNO__ENDIAN: return "LIBBPF_ERRNO__ENDIAN";
    case LIBBPF_ERRNO__INTERNAL: return "LIBBPF_ERRNO__INTERNAL";
    case LIBBPF_ERRNO__RELOC: return "LIBBPF_ERRNO__RELOC";
    case LIBBPF_ERRNO__LOAD: return "LIBBPF_ERRNO__LOAD";
    case LIBBPF_ERRNO__VERIFY: return "LIBBPF_ERRNO__VERIFY";
    case LIBBPF_ERRNO__PROG2BIG: return "LIBBPF_ERRNO__PROG2BIG";
    case LIBBPF_ERRNO__KVER: return "LIBBPF_ERRNO__KVER";
    case LIBBPF_ERRNO__PROGTYPE: return "LIBBPF_ERRNO__PROGTYPE";
    case LIBBPF_ERRNO__WRNGPID: return "LIBBPF_ERRNO__WRNGPID";
    case LIBBPF_ERRNO__INVSEQ: return "LIBBPF_ERRNO__INVSEQ";
    case LIBBPF_ERRNO__NLPARSE: return "LIBBPF_ERRNO__NLPARSE";
    default: break;
  }
  const char* name = strerrorname_np(err);
  return name ? name : "E" + std::to_string(err);
}

static std::string Describe(int err) {
  char buf[256];
  if (libbpf_strerror(err, buf, sizeof(buf)) == 0) return buf;
  return strerror(err);
}

Napi::Error MakeError(Napi::Env env, const std::string& op, int err, const std::string& detail) {
  return MakeErrorWithLog(env, op, err, detail, LogTail());
}

Napi::Error MakeErrorWithLog(Napi::Env env, const std::string& op, int err, const std::string& detail,
                             const std::string& log) {
  if (err < 0) err = -err;
  std::string message = op + ": " + (detail.empty() ? "" : detail + ": ") + Describe(err) + " (" + ErrnoName(err) + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("op", Napi::String::New(env, op));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("log", Napi::String::New(env, log));
  return error;
}

}  // namespace probescope
