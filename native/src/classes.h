// The addon's JS classes: BpfObject (an opened/loaded bpf_object), Link (an attached program) and RingBuffer.
#pragma once

#include <napi.h>
#include <uv.h>

#include <bpf/libbpf.h>

#include <string>
#include <vector>

namespace probescope {

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit BpfObject(const Napi::CallbackInfo& info);
  ~BpfObject() override;

 private:
  struct bpf_object* obj_ = nullptr;
  // Backing bytes of an object opened from memory: libbpf parses the ELF in place until load.
  std::vector<uint8_t> bytes_;
  std::string name_;
  bool loaded_ = false;
  // A loadAsync in flight: the object is libbpf's on another thread until it settles.
  bool loading_ = false;
  bool close_after_load_ = false;

  struct bpf_object* Require(Napi::Env env, const char* op);
  struct bpf_program* Program(Napi::Env env, const char* op, const std::string& name);
  struct bpf_map* Map(Napi::Env env, const char* op, const std::string& name);

  Napi::Value Constants(const Napi::CallbackInfo& info);
  Napi::Value SetConstant(const Napi::CallbackInfo& info);
  Napi::Value SetAutoload(const Napi::CallbackInfo& info);
  Napi::Value ReuseMap(const Napi::CallbackInfo& info);
  Napi::Value SetMaxEntries(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value LoadAsync(const Napi::CallbackInfo& info);
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value Lookup(const Napi::CallbackInfo& info);
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value Delete(const Napi::CallbackInfo& info);
  Napi::Value AttachUprobe(const Napi::CallbackInfo& info);
  Napi::Value SetUprobeMulti(const Napi::CallbackInfo& info);
  Napi::Value AttachUprobeMulti(const Napi::CallbackInfo& info);
  Napi::Value AttachTracepoint(const Napi::CallbackInfo& info);
  Napi::Value AttachCgroup(const Napi::CallbackInfo& info);
  Napi::Value TestRun(const Napi::CallbackInfo& info);
  Napi::Value OpenRingBuffer(const Napi::CallbackInfo& info);
  Napi::Value Btf(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
};

class Link : public Napi::ObjectWrap<Link> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::FunctionReference* constructor;
  explicit Link(const Napi::CallbackInfo& info);
  ~Link() override;
  void Adopt(struct bpf_link* link);
  // A link made by our own BPF_LINK_CREATE (uprobe_multi): only its fd.
  void AdoptFd(int fd);

 private:
  struct bpf_link* link_ = nullptr;
  int fd_ = -1;
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value DestroyAsync(const Napi::CallbackInfo& info);
  Napi::Value Id(const Napi::CallbackInfo& info);
  Napi::Value Fd(const Napi::CallbackInfo& info);
};

struct RingState;

// Module functions of links.cc.
Napi::Value UprobeMultiSupported(const Napi::CallbackInfo& info);
Napi::Value UprobeMultiLayout(const Napi::CallbackInfo& info);

class RingBuffer : public Napi::ObjectWrap<RingBuffer> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::FunctionReference* constructor;
  explicit RingBuffer(const Napi::CallbackInfo& info);
  ~RingBuffer() override;
  // Starts polling `map_fd`; `callback(data: Uint8Array, offsets: Uint32Array, count)` gets each batch, in views
  // reused for the next one (valid during the call only). A batch holds at most `max_batch` records, `batch_bytes`.
  void Start(Napi::Env env, int map_fd, Napi::Function callback, uint32_t drain_ms, uint32_t max_batch,
             uint32_t batch_bytes);

 private:
  RingState* state_ = nullptr;
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Consume(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value SetWakeupBytes(const Napi::CallbackInfo& info);
};

}  // namespace probescope
