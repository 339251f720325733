// Entry point of the probescope N-API addon over libbpf.
#include <bpf/libbpf.h>

#include <malloc.h>

#include <thread>

#include "classes.h"
#include "common.h"
#include "kernel_btf.h"

namespace probescope {

static Napi::Value Version(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(),
                           std::to_string(libbpf_major_version()) + "." + std::to_string(libbpf_minor_version()));
}

// errnoName(n): the symbolic name of an errno, for errors raised on the JS side.
static Napi::Value ErrnoNameJs(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), ErrnoName(info[0].As<Napi::Number>().Int32Value()));
}

// readKernelFacts(): starts reading what loads take from the kernel's BTF (kernel_btf.h) on a thread of its own, so
// the first load that needs it finds it done (or waits only for the rest) instead of parsing the BTF itself. Its
// outcome, an error included, is what that load gets; calling it again does nothing more.
static Napi::Value ReadKernelFacts(const Napi::CallbackInfo& info) {
  std::thread([]() {
    ExeOffsets offsets;
    std::string error;
    KernelExeOffsets(&offsets, &error);
    // The parse's megabytes sat in this thread's malloc arena, which glibc would keep: hand them back.
    malloc_trim(0);
  }).detach();
  return info.Env().Undefined();
}

// sched.cc
Napi::Value SchedGiveWay(const Napi::CallbackInfo& info);
Napi::Value SchedTakeBack(const Napi::CallbackInfo& info);
Napi::Value SchedGuardFired(const Napi::CallbackInfo& info);

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLogCapture();
  Link::constructor = new Napi::FunctionReference(Napi::Persistent(Link::Define(env)));
  RingBuffer::constructor = new Napi::FunctionReference(Napi::Persistent(RingBuffer::Define(env)));
  exports.Set("BpfObject", BpfObject::Define(env));
  exports.Set("libbpfVersion", Napi::Function::New(env, Version));
  exports.Set("errnoName", Napi::Function::New(env, ErrnoNameJs));
  exports.Set("uprobeMultiSupported", Napi::Function::New(env, UprobeMultiSupported));
  exports.Set("uprobeMultiLayout", Napi::Function::New(env, UprobeMultiLayout));
  exports.Set("readKernelFacts", Napi::Function::New(env, ReadKernelFacts));
  exports.Set("schedGiveWay", Napi::Function::New(env, SchedGiveWay));
  exports.Set("schedTakeBack", Napi::Function::New(env, SchedTakeBack));
  exports.Set("schedGuardFired", Napi::Function::New(env, SchedGuardFired));
  return exports;
}

}  // namespace probescope

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return probescope::Init(env, exports); }

NODE_API_MODULE(probescope_bpf, InitModule)
