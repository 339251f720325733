// Link creation and destruction off the JS thread, and uprobe_multi links.
//
// Why off the thread: unregistering a uprobe waits for an RCU grace period in the kernel (~100 ms measured here per
// link), and registering one on a file walks every process that maps it. Done on the event loop, that stalls ring
// buffer draining and every other process's attach. Each job runs on its own thread, so the grace periods of many
// links closed at once overlap instead of adding up, and settles a promise back on the JS thread.
//
// Why uprobe_multi: one link carries every offset of one program in one file (and optionally one pid) and is
// unregistered in one batch, so a probe with 20 return sites costs one grace period instead of 20. libbpf 1.1 has no
// API for it, so we issue BPF_LINK_CREATE ourselves with the kernel's UAPI layout (kernel >= 6.6); the layout is
// exported by `uprobeMultiLayout()` so a test checks it against the running kernel's BTF.
#include <bpf/bpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <functional>
#include <mutex>
#include <thread>

#include "classes.h"
#include "common.h"

namespace probescope {

namespace {

// Values from the kernel UAPI (include/uapi/linux/bpf.h) newer than the system headers (Debian 12 ships 6.1's).
constexpr uint32_t kBpfTraceUprobeMulti = 48;
constexpr int kBpfLinkCreate = 28;
// uprobe_multi.flags: the link's probes fire on return (uretprobes).
constexpr uint32_t kBpfFUprobeMultiReturn = 1;

// The BPF_LINK_CREATE member of `union bpf_attr` as used for uprobe_multi: a common head, then the per-type union.
struct UprobeMultiAttr {
  uint32_t prog_fd;
  uint32_t target_fd;
  uint32_t attach_type;
  uint32_t flags;
  uint64_t path;
  uint64_t offsets;
  uint64_t ref_ctr_offsets;
  uint64_t cookies;
  uint32_t cnt;
  uint32_t multi_flags;
  uint32_t pid;
};

// The kernel copies the attr and insists that bytes it does not know are zero: hand it a zeroed, larger buffer.
constexpr size_t kAttrSize = 128;
static_assert(sizeof(UprobeMultiAttr) <= kAttrSize, "attr buffer too small");

int LinkCreateUprobeMulti(int prog_fd, const std::string& path, const std::vector<uint64_t>& offsets, int pid,
                          bool retprobe = false) {
  alignas(8) uint8_t buf[kAttrSize] = {};
  UprobeMultiAttr attr = {};
  attr.prog_fd = static_cast<uint32_t>(prog_fd);
  attr.attach_type = kBpfTraceUprobeMulti;
  attr.path = reinterpret_cast<uint64_t>(path.c_str());
  attr.offsets = reinterpret_cast<uint64_t>(offsets.data());
  attr.cnt = static_cast<uint32_t>(offsets.size());
  attr.pid = pid > 0 ? static_cast<uint32_t>(pid) : 0;
  attr.multi_flags = retprobe ? kBpfFUprobeMultiReturn : 0;
  memcpy(buf, &attr, sizeof(attr));
  int fd = static_cast<int>(syscall(__NR_bpf, kBpfLinkCreate, buf, kAttrSize));
  return fd < 0 ? -errno : fd;
}

// Does this kernel create uprobe_multi links? Load a trivial program for that attach type and ask for a link on
// "/" (a directory): a kernel that knows the type checks the path and answers EBADF; an older one, EINVAL.
bool ProbeUprobeMulti() {
  struct bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = static_cast<enum bpf_attach_type>(kBpfTraceUprobeMulti));
  int prog = bpf_prog_load(BPF_PROG_TYPE_KPROBE, "ps_probe_um", "GPL", insns, 2, &opts);
  if (prog < 0) return false;
  std::vector<uint64_t> offsets = {0};
  int link = LinkCreateUprobeMulti(prog, "/", offsets, 0);
  close(prog);
  if (link >= 0) {
    close(link);
    return true;
  }
  return link == -EBADF;
}

}  // namespace

// uprobeMultiSupported(): whether BPF_TRACE_UPROBE_MULTI links work here (probed once per process).
Napi::Value UprobeMultiSupported(const Napi::CallbackInfo& info) {
  static std::once_flag once;
  static bool supported = false;
  std::call_once(once, [] { supported = ProbeUprobeMulti(); });
  return Napi::Boolean::New(info.Env(), supported);
}

// uprobeMultiLayout(): { size, fields: { name: offset } } of the attr this addon writes, for a BTF check in tests.
Napi::Value UprobeMultiLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object fields = Napi::Object::New(env);
  fields.Set("prog_fd", offsetof(UprobeMultiAttr, prog_fd));
  fields.Set("target_fd", offsetof(UprobeMultiAttr, target_fd));
  fields.Set("attach_type", offsetof(UprobeMultiAttr, attach_type));
  fields.Set("flags", offsetof(UprobeMultiAttr, flags));
  fields.Set("uprobe_multi.path", offsetof(UprobeMultiAttr, path));
  fields.Set("uprobe_multi.offsets", offsetof(UprobeMultiAttr, offsets));
  fields.Set("uprobe_multi.ref_ctr_offsets", offsetof(UprobeMultiAttr, ref_ctr_offsets));
  fields.Set("uprobe_multi.cookies", offsetof(UprobeMultiAttr, cookies));
  fields.Set("uprobe_multi.cnt", offsetof(UprobeMultiAttr, cnt));
  fields.Set("uprobe_multi.flags", offsetof(UprobeMultiAttr, multi_flags));
  fields.Set("uprobe_multi.pid", offsetof(UprobeMultiAttr, pid));
  Napi::Object out = Napi::Object::New(env);
  out.Set("attachType", kBpfTraceUprobeMulti);
  out.Set("fields", fields);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// BpfObject methods that use the helpers above
// ---------------------------------------------------------------------------------------------------------------

// setUprobeMulti(program): before load, make the program attachable through uprobe_multi links (only those).
Napi::Value BpfObject::SetUprobeMulti(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "expected a program name");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  struct bpf_program* prog = Program(env, "setUprobeMulti", name);
  if (loaded_) throw MakeError(env, "setUprobeMulti", EBUSY, "object " + name_ + " is already loaded");
  int err = bpf_program__set_expected_attach_type(prog, static_cast<enum bpf_attach_type>(kBpfTraceUprobeMulti));
  if (err) throw MakeError(env, "setUprobeMulti", -err, name);
  return env.Undefined();
}

// attachUprobeMulti(program, binary, offsets: number[], pid, retprobe?): Promise<Link>. pid <= 0: every process of
// the file; retprobe: uretprobes.
Napi::Value BpfObject::AttachUprobeMulti(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsArray() || !info[3].IsNumber()) {
    throw Napi::TypeError::New(env, "attachUprobeMulti(program, binary, offsets[], pid)");
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  std::string binary = info[1].As<Napi::String>().Utf8Value();
  Napi::Array arr = info[2].As<Napi::Array>();
  int pid = info[3].As<Napi::Number>().Int32Value();
  bool retprobe = info.Length() > 4 && info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value();
  struct bpf_program* prog = Program(env, "attachUprobeMulti", name);
  if (!loaded_) throw MakeError(env, "attachUprobeMulti", EINVAL, "object " + name_ + " is not loaded");
  int prog_fd = bpf_program__fd(prog);
  std::vector<uint64_t> offsets;
  offsets.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) offsets.push_back(arr.Get(i).As<Napi::Number>().Int64Value());
  if (offsets.empty()) throw MakeError(env, "attachUprobeMulti", EINVAL, name + ": no offsets");
  std::string what = name + " -> " + binary + " (" + std::to_string(offsets.size()) + " offsets) pid " +
                     std::to_string(pid) + (retprobe ? " (return)" : "");
  // The program's fd must outlive the thread even if the object is closed meanwhile.
  int held = dup(prog_fd);
  if (held < 0) throw MakeError(env, "attachUprobeMulti", errno, what);
  return OffThread<int>(
      env, "probescope.attach",
      [held, binary, offsets, pid, retprobe]() {
        int fd = LinkCreateUprobeMulti(held, binary, offsets, pid, retprobe);
        close(held);
        return fd;
      },
      [what](Napi::Env env, int& fd) -> Napi::Value {
        if (fd < 0) throw MakeError(env, "attachUprobeMulti", -fd, what);
        Napi::Object obj = Link::constructor->New({});
        Link::Unwrap(obj)->AdoptFd(fd);
        return obj;
      });
}

// ---------------------------------------------------------------------------------------------------------------
// Link: asynchronous destroy
// ---------------------------------------------------------------------------------------------------------------

// destroyAsync(): Promise<void>; the link is gone from JS's view at once, from the kernel's when the promise settles.
Napi::Value Link::DestroyAsync(const Napi::CallbackInfo& info) {
  struct bpf_link* link = link_;
  int fd = fd_;
  link_ = nullptr;
  fd_ = -1;
  return OffThread<int>(
      info.Env(), "probescope.detach",
      [link, fd]() {
        if (link != nullptr) bpf_link__destroy(link);
        if (fd >= 0) close(fd);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

}  // namespace probescope
