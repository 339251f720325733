// Shared declarations of the probescope native addon: error helpers and the libbpf log capture.
#pragma once

#include <napi.h>

#include <string>

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

}  // namespace probescope
