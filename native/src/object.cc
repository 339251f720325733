#include <bpf/bpf.h>
#include <bpf/btf.h>

#include <set>
#include <string>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "classes.h"
#include "common.h"
#include "kernel_btf.h"
#include "rodata.h"

namespace probescope {

namespace {

std::string Str(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string("expected a string for ") + what);
  }
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Buffer<uint8_t> Buf(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsBuffer()) {
    throw Napi::TypeError::New(info.Env(), std::string("expected a Buffer for ") + what);
  }
  return info[i].As<Napi::Buffer<uint8_t>>();
}

// Per-CPU maps read and write one value per possible CPU, each padded to 8 bytes.
size_t ValueSize(struct bpf_map* map) {
  size_t size = bpf_map__value_size(map);
  switch (bpf_map__type(map)) {
    case BPF_MAP_TYPE_PERCPU_ARRAY:
    case BPF_MAP_TYPE_PERCPU_HASH:
    case BPF_MAP_TYPE_LRU_PERCPU_HASH:
    case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE: {
      int cpus = libbpf_num_possible_cpus();
      return ((size + 7) / 8) * 8 * (cpus > 0 ? cpus : 1);
    }
    default:
      return size;
  }
}


// BTF kinds as the JS side names them; the rest are "other".
const char* BtfKindName(const struct btf_type* t) {
  switch (btf_kind(t)) {
    case BTF_KIND_INT: return "int";
    case BTF_KIND_PTR: return "ptr";
    case BTF_KIND_ARRAY: return "array";
    case BTF_KIND_STRUCT: return "struct";
    case BTF_KIND_UNION: return "union";
    case BTF_KIND_ENUM: return "enum";
    case BTF_KIND_ENUM64: return "enum";
    case BTF_KIND_FLOAT: return "float";
    default: return "other";
  }
}

// Nested struct members are described to this depth: deeper ones are reported as leaves (records are shallow).
constexpr int kBtfMaxDepth = 8;

// { name, size, kind, members: [{ name, bitOffset, bitSize, size, kind, type, elements?, members? }] } of a struct or
// union; typedefs and qualifiers are resolved, bitSize is 0 unless the member is a bitfield.
Napi::Object DescribeComposite(Napi::Env env, const struct btf* btf, const struct btf_type* t, int depth) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", btf__name_by_offset(btf, t->name_off));
  out.Set("size", t->size);
  out.Set("kind", BtfKindName(t));
  Napi::Array members = Napi::Array::New(env);
  const struct btf_member* m = btf_members(t);
  for (int i = 0; i < btf_vlen(t); i++, m++) {
    Napi::Object member = Napi::Object::New(env);
    member.Set("name", btf__name_by_offset(btf, m->name_off));
    member.Set("bitOffset", btf_member_bit_offset(t, i));
    member.Set("bitSize", btf_member_bitfield_size(t, i));
    __s64 size = btf__resolve_size(btf, m->type);
    member.Set("size", Napi::Number::New(env, static_cast<double>(size < 0 ? 0 : size)));
    int resolved = btf__resolve_type(btf, m->type);
    const struct btf_type* mt = resolved < 0 ? nullptr : btf__type_by_id(btf, resolved);
    member.Set("kind", mt == nullptr ? "other" : BtfKindName(mt));
    member.Set("type", mt == nullptr ? "" : btf__name_by_offset(btf, mt->name_off));
    if (mt != nullptr && btf_is_array(mt)) member.Set("elements", btf_array(mt)->nelems);
    if (mt != nullptr && btf_is_composite(mt) && depth < kBtfMaxDepth) {
      member.Set("members", DescribeComposite(env, btf, mt, depth + 1).Get("members"));
    }
    members.Set(i, member);
  }
  out.Set("members", members);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// BpfObject
// ---------------------------------------------------------------------------------------------------------------

Napi::Function BpfObject::Define(Napi::Env env) {
  return DefineClass(env, "BpfObject", {
    InstanceMethod<&BpfObject::Constants>("constants"),
    InstanceMethod<&BpfObject::SetConstant>("setConstant"),
    InstanceMethod<&BpfObject::SetAutoload>("setAutoload"),
    InstanceMethod<&BpfObject::ReuseMap>("reuseMap"),
    InstanceMethod<&BpfObject::SetMaxEntries>("setMaxEntries"),
    InstanceMethod<&BpfObject::Load>("load"),
    InstanceMethod<&BpfObject::LoadAsync>("loadAsync"),
    InstanceMethod<&BpfObject::Programs>("programs"),
    InstanceMethod<&BpfObject::Maps>("maps"),
    InstanceMethod<&BpfObject::Lookup>("lookup"),
    InstanceMethod<&BpfObject::Update>("update"),
    InstanceMethod<&BpfObject::Delete>("delete"),
    InstanceMethod<&BpfObject::AttachUprobe>("attachUprobe"),
    InstanceMethod<&BpfObject::SetUprobeMulti>("setUprobeMulti"),
    InstanceMethod<&BpfObject::AttachUprobeMulti>("attachUprobeMulti"),
    InstanceMethod<&BpfObject::AttachTracepoint>("attachTracepoint"),
    InstanceMethod<&BpfObject::AttachCgroup>("attachCgroup"),
    InstanceMethod<&BpfObject::TestRun>("testRun"),
    InstanceMethod<&BpfObject::OpenRingBuffer>("ringBuffer"),
    InstanceMethod<&BpfObject::Btf>("btf"),
    InstanceMethod<&BpfObject::Close>("close"),
  });
}

// new BpfObject(source: string | Buffer, name: string)
BpfObject::BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {
  Napi::Env env = info.Env();
  name_ = Str(info, 1, "name");
  LogReset();
  LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name_.c_str());
  std::string source;
  if (info.Length() > 0 && info[0].IsBuffer()) {
    auto buf = info[0].As<Napi::Buffer<uint8_t>>();
    bytes_.assign(buf.Data(), buf.Data() + buf.Length());
    source = "<" + std::to_string(bytes_.size()) + " bytes>";
    obj_ = bpf_object__open_mem(bytes_.data(), bytes_.size(), &opts);
  } else {
    source = Str(info, 0, "source");
    obj_ = bpf_object__open_file(source.c_str(), &opts);
  }
  if (obj_ == nullptr) {
    int err = errno;
    throw MakeError(env, "open", err ? err : EINVAL, source);
  }
}

BpfObject::~BpfObject() {
  if (obj_ != nullptr) bpf_object__close(obj_);
  obj_ = nullptr;
}

struct bpf_object* BpfObject::Require(Napi::Env env, const char* op) {
  if (obj_ == nullptr) throw MakeError(env, op, EBADF, "object " + name_ + " is closed");
  if (loading_) throw MakeError(env, op, EBUSY, "object " + name_ + " is being loaded");
  return obj_;
}

struct bpf_program* BpfObject::Program(Napi::Env env, const char* op, const std::string& name) {
  struct bpf_program* prog = bpf_object__find_program_by_name(Require(env, op), name.c_str());
  if (prog == nullptr) throw MakeError(env, op, ENOENT, "no program " + name + " in " + name_);
  return prog;
}

struct bpf_map* BpfObject::Map(Napi::Env env, const char* op, const std::string& name) {
  struct bpf_map* map = bpf_object__find_map_by_name(Require(env, op), name.c_str());
  if (map == nullptr) throw MakeError(env, op, ENOENT, "no map " + name + " in " + name_);
  return map;
}

// constants(): { [name]: size } of the `.rodata` variables that can be set before load.
Napi::Value BpfObject::Constants(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  struct btf* btf = bpf_object__btf(Require(env, "constants"));
  if (btf == nullptr) return out;
  int sec_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
  if (sec_id < 0) return out;
  const struct btf_type* sec = btf__type_by_id(btf, sec_id);
  const struct btf_var_secinfo* vsi = btf_var_secinfos(sec);
  for (int i = 0; i < btf_vlen(sec); i++, vsi++) {
    const struct btf_type* var = btf__type_by_id(btf, vsi->type);
    if (var == nullptr || !btf_is_var(var)) continue;
    out.Set(btf__name_by_offset(btf, var->name_off), Napi::Number::New(env, vsi->size));
  }
  return out;
}

// setConstant(name, bytes): write a `const volatile` global into the `.rodata` initial image before load.
Napi::Value BpfObject::SetConstant(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = Str(info, 0, "constant name");
  auto value = Buf(info, 1, "constant value");
  struct bpf_object* obj = Require(env, "setConstant");
  if (loaded_) throw MakeError(env, "setConstant", EBUSY, "object " + name_ + " is already loaded");
  RodataVar var{};
  RodataFind found = FindRodataVar(obj, name, &var);
  if (found == RodataFind::kNoSection) {
    throw MakeError(env, "setConstant", ENOENT, "no .rodata constants in " + name_ + " (looking for " + name + ")");
  }
  if (found == RodataFind::kNoVariable) throw MakeError(env, "setConstant", ENOENT, "no constant " + name + " in " + name_);
  if (value.Length() != var.size) {
    throw MakeError(env, "setConstant", EINVAL,
                    "constant " + name + " is " + std::to_string(var.size) + " bytes, got " +
                        std::to_string(value.Length()));
  }
  int err = WriteRodataVar(obj, var, value.Data());
  if (err == -ENOENT) throw MakeError(env, "setConstant", ENOENT, "no .rodata image for " + name + " in " + name_);
  if (err) throw MakeError(env, "setConstant", -err, name);
  return env.Undefined();
}

// setAutoload(program, enabled)
Napi::Value BpfObject::SetAutoload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_program* prog = Program(env, "setAutoload", Str(info, 0, "program"));
  int err = bpf_program__set_autoload(prog, info[1].ToBoolean().Value());
  if (err) throw MakeError(env, "setAutoload", -err, bpf_program__name(prog));
  return env.Undefined();
}

// reuseMap(map, fd): use another object's map instead of creating this one.
Napi::Value BpfObject::ReuseMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = Map(env, "reuseMap", Str(info, 0, "map"));
  LogReset();
  int err = bpf_map__reuse_fd(map, info[1].As<Napi::Number>().Int32Value());
  if (err) throw MakeError(env, "reuseMap", -err, bpf_map__name(map));
  return env.Undefined();
}

// setMaxEntries(map, n): a map's size before load (for a ring buffer, its bytes: a power of two, a page multiple).
Napi::Value BpfObject::SetMaxEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = Map(env, "setMaxEntries", Str(info, 0, "map"));
  LogReset();
  int err = bpf_map__set_max_entries(map, info[1].As<Napi::Number>().Uint32Value());
  if (err) throw MakeError(env, "setMaxEntries", -err, bpf_map__name(map));
  return env.Undefined();
}

// The verifier gives up with EAGAIN when a signal is pending for the loading thread (a profiler's SIGPROF every
// millisecond, a child's SIGCHLD): signals are blocked for the load; they are delivered when the mask is restored.
// Before that, the constants the addon owns are written from the kernel's BTF (kernel_btf.h): `why` then says what
// failed, if that was it.
static int LoadBlockingSignals(struct bpf_object* obj, std::string* why) {
  int filled = FillKernelConstants(obj, why);
  if (filled) return filled;
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &saved);
  int err = bpf_object__load(obj);
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  return err;
}

Napi::Value BpfObject::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_object* obj = Require(env, "load");
  LogReset();
  std::string why;
  int err = LoadBlockingSignals(obj, &why);
  if (err) throw MakeError(env, "load", -err, why.empty() ? name_ : name_ + ": " + why);
  loaded_ = true;
  return env.Undefined();
}

struct LoadResult {
  int err = 0;
  std::string log;
  std::string why;
};

// At most this many objects are verified at once: the verifier is CPU work (more threads than CPUs gain nothing), and
// each thread's allocations land in a malloc arena of its own, which glibc keeps: ten loads side by side left ten
// arenas of 6-11 MiB resident (+30 MiB of RSS). A thread that finds all slots taken waits for one.
static std::mutex load_slots_mutex;
static std::condition_variable load_slots_freed;
static unsigned load_slots_used = 0;
static unsigned LoadSlots() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 2 : std::min(n, 4u);
}

// loadAsync(): Promise<void>. The same load on a thread of its own: the verifier's work (tens to hundreds of ms per
// object) stays off the event loop, and objects load side by side. The object must not be used or closed until the
// promise settles (`loading` guards it).
Napi::Value BpfObject::LoadAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_object* obj = Require(env, "load");
  loading_ = true;
  Ref();  // kept alive until settled, whatever JS drops meanwhile
  return OffThread<LoadResult>(
      env, "probescope.load",
      [obj]() {
        {
          std::unique_lock<std::mutex> lock(load_slots_mutex);
          load_slots_freed.wait(lock, [] { return load_slots_used < LoadSlots(); });
          load_slots_used++;
        }
        LogReset();
        LoadResult r;
        r.err = LoadBlockingSignals(obj, &r.why);
        {
          std::lock_guard<std::mutex> lock(load_slots_mutex);
          load_slots_used--;
        }
        load_slots_freed.notify_one();
        if (r.err) r.log = LogTail();
        // libbpf parses the kernel's BTF (megabytes) for a load with CO-RE relocations or tp_btf programs and frees
        // it after (the probes' uprobe objects have none: kernel_btf.h); on this thread that memory sits in a malloc
        // arena of its own, which glibc keeps (measured: ~11 MiB per load, 30 MiB of the agent's RSS). Hand it back.
        malloc_trim(0);
        return r;
      },
      [this](Napi::Env env, LoadResult& r) -> Napi::Value {
        loading_ = false;
        Unref();
        if (close_after_load_) {
          // close() came while the load ran: done now that libbpf is finished with the object.
          bpf_object__close(obj_);
          obj_ = nullptr;
          bytes_.clear();
          throw MakeError(env, "load", ECANCELED, name_ + " was closed while loading");
        }
        if (r.err) throw MakeErrorWithLog(env, "load", -r.err, r.why.empty() ? name_ : name_ + ": " + r.why, r.log);
        loaded_ = true;
        return env.Undefined();
      });
}

// programs(): [{ name, section, type, fd, id, autoload }]
Napi::Value BpfObject::Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  struct bpf_program* prog;
  uint32_t i = 0;
  bpf_object__for_each_program(prog, Require(env, "programs")) {
    Napi::Object p = Napi::Object::New(env);
    p.Set("name", bpf_program__name(prog));
    p.Set("section", bpf_program__section_name(prog));
    const char* type = libbpf_bpf_prog_type_str(bpf_program__type(prog));
    p.Set("type", type ? type : "unknown");
    p.Set("autoload", bpf_program__autoload(prog));
    int fd = loaded_ ? bpf_program__fd(prog) : -1;
    p.Set("fd", fd);
    uint32_t id = 0;
    if (fd >= 0) {
      struct bpf_prog_info pinfo = {};
      uint32_t len = sizeof(pinfo);
      if (bpf_obj_get_info_by_fd(fd, &pinfo, &len) == 0) id = pinfo.id;
    }
    p.Set("id", id);
    out.Set(i++, p);
  }
  return out;
}

// maps(): [{ name, type, keySize, valueSize, maxEntries, fd }]
Napi::Value BpfObject::Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  struct bpf_map* map;
  uint32_t i = 0;
  bpf_object__for_each_map(map, Require(env, "maps")) {
    Napi::Object m = Napi::Object::New(env);
    m.Set("name", bpf_map__name(map));
    const char* type = libbpf_bpf_map_type_str(bpf_map__type(map));
    m.Set("type", type ? type : "unknown");
    m.Set("keySize", bpf_map__key_size(map));
    m.Set("valueSize", bpf_map__value_size(map));
    m.Set("maxEntries", bpf_map__max_entries(map));
    m.Set("internal", bpf_map__is_internal(map));
    m.Set("fd", loaded_ ? bpf_map__fd(map) : -1);
    out.Set(i++, m);
  }
  return out;
}

// lookup(map, key): Buffer | null
Napi::Value BpfObject::Lookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = Map(env, "lookup", Str(info, 0, "map"));
  auto key = Buf(info, 1, "key");
  std::vector<uint8_t> value(ValueSize(map));
  LogReset();
  int err = bpf_map__lookup_elem(map, key.Data(), key.Length(), value.data(), value.size(), 0);
  if (err == -ENOENT) return env.Null();
  if (err) throw MakeError(env, "lookup", -err, bpf_map__name(map));
  return Napi::Buffer<uint8_t>::Copy(env, value.data(), value.size());
}

// update(map, key, value, flags?)
Napi::Value BpfObject::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = Map(env, "update", Str(info, 0, "map"));
  auto key = Buf(info, 1, "key");
  auto value = Buf(info, 2, "value");
  uint64_t flags = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int64Value() : static_cast<int64_t>(BPF_ANY);
  LogReset();
  int err = bpf_map__update_elem(map, key.Data(), key.Length(), value.Data(), value.Length(), flags);
  if (err) throw MakeError(env, "update", -err, bpf_map__name(map));
  return env.Undefined();
}

// delete(map, key): false when the key was absent
Napi::Value BpfObject::Delete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = Map(env, "delete", Str(info, 0, "map"));
  auto key = Buf(info, 1, "key");
  LogReset();
  int err = bpf_map__delete_elem(map, key.Data(), key.Length(), 0);
  if (err == -ENOENT) return Napi::Boolean::New(env, false);
  if (err) throw MakeError(env, "delete", -err, bpf_map__name(map));
  return Napi::Boolean::New(env, true);
}

static Napi::Object WrapLink(Napi::Env env, struct bpf_link* link) {
  Napi::Object obj = Link::constructor->New({});
  Link::Unwrap(obj)->Adopt(link);
  return obj;
}

// attachUprobe(program, binary, offset, pid, symbol?, retprobe?): Link. With a symbol, offset is relative to it;
// retprobe makes it a uretprobe (libbpf does not take that from the section when attaching by hand).
Napi::Value BpfObject::AttachUprobe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = Str(info, 0, "program");
  std::string binary = Str(info, 1, "binary");
  int64_t offset = info[2].As<Napi::Number>().Int64Value();
  int pid = info[3].As<Napi::Number>().Int32Value();
  std::string symbol = info.Length() > 4 && info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "";
  bool retprobe = info.Length() > 5 && info[5].IsBoolean() && info[5].As<Napi::Boolean>().Value();
  struct bpf_program* prog = Program(env, "attachUprobe", name);
  LIBBPF_OPTS(bpf_uprobe_opts, opts);
  if (!symbol.empty()) opts.func_name = symbol.c_str();
  opts.retprobe = retprobe;
  LogReset();
  struct bpf_link* link = bpf_program__attach_uprobe_opts(prog, pid, binary.c_str(), offset, &opts);
  if (link == nullptr) {
    int err = errno;
    throw MakeError(env, "attachUprobe", err ? err : EINVAL,
                    name + " -> " + binary + (symbol.empty() ? "" : ":" + symbol) + "+" + std::to_string(offset) +
                        " pid " + std::to_string(pid) + (retprobe ? " (return)" : ""));
  }
  return WrapLink(env, link);
}

// attachTracepoint(program, category, name, id): Link.
// A SEC("tp/...") program needs the tracepoint's id, which only tracefs publishes: with id >= 0 we open the perf
// event ourselves (the caller found the id), otherwise libbpf reads it from a mounted tracefs. raw_tp and tp_btf
// programs attach by name and need no tracefs.
Napi::Value BpfObject::AttachTracepoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = Str(info, 0, "program");
  std::string category = Str(info, 1, "category");
  std::string event = Str(info, 2, "name");
  int64_t id = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int64Value() : -1;
  struct bpf_program* prog = Program(env, "attachTracepoint", name);
  std::string what = name + " -> " + category + ":" + event;
  LogReset();
  struct bpf_link* link = nullptr;
  switch (bpf_program__type(prog)) {
    case BPF_PROG_TYPE_RAW_TRACEPOINT:
      link = bpf_program__attach_raw_tracepoint(prog, event.c_str());
      break;
    case BPF_PROG_TYPE_TRACING:
      link = bpf_program__attach_trace(prog);
      break;
    case BPF_PROG_TYPE_TRACEPOINT:
      if (id >= 0) {
        struct perf_event_attr attr = {};
        attr.type = PERF_TYPE_TRACEPOINT;
        attr.size = sizeof(attr);
        attr.config = static_cast<uint64_t>(id);
        int pfd = syscall(__NR_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
        if (pfd < 0) {
          int err = errno;
          throw MakeError(env, "attachTracepoint", err, what + " (perf_event_open id " + std::to_string(id) + ")");
        }
        link = bpf_program__attach_perf_event(prog, pfd);
        if (link == nullptr) {
          int err = errno;
          close(pfd);
          errno = err;
        }
      } else {
        link = bpf_program__attach_tracepoint(prog, category.c_str(), event.c_str());
      }
      break;
    default:
      throw MakeError(env, "attachTracepoint", EINVAL, what + ": program is not a tracepoint program");
  }
  if (link == nullptr) {
    int err = errno;
    throw MakeError(env, "attachTracepoint", err ? err : EINVAL, what);
  }
  return WrapLink(env, link);
}

// attachCgroup(program, cgroupDir): Link. A cgroup program (sock_ops, ...) attached to the cgroup v2 directory as a
// BPF link; the link keeps the cgroup referenced, so the directory's fd is closed at once.
Napi::Value BpfObject::AttachCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = Str(info, 0, "program");
  std::string dir = Str(info, 1, "cgroup directory");
  struct bpf_program* prog = Program(env, "attachCgroup", name);
  int cgroup = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroup < 0) {
    int err = errno;
    throw MakeError(env, "attachCgroup", err, name + " -> " + dir);
  }
  LogReset();
  struct bpf_link* link = bpf_program__attach_cgroup(prog, cgroup);
  int err = link == nullptr ? errno : 0;
  close(cgroup);
  if (link == nullptr) throw MakeError(env, "attachCgroup", err ? err : EINVAL, name + " -> " + dir);
  return WrapLink(env, link);
}

// testRun(program, ctx: Buffer | null, repeat): { retval, duration } (BPF_PROG_TEST_RUN)
Napi::Value BpfObject::TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_program* prog = Program(env, "testRun", Str(info, 0, "program"));
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  std::vector<uint8_t> ctx;
  if (info.Length() > 1 && info[1].IsBuffer()) {
    auto buf = info[1].As<Napi::Buffer<uint8_t>>();
    ctx.assign(buf.Data(), buf.Data() + buf.Length());
    opts.ctx_in = ctx.data();
    opts.ctx_size_in = ctx.size();
  }
  if (info.Length() > 2 && info[2].IsNumber()) opts.repeat = info[2].As<Napi::Number>().Uint32Value();
  int err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts);
  if (err) throw MakeError(env, "testRun", errno ? errno : -err, bpf_program__name(prog));
  Napi::Object out = Napi::Object::New(env);
  out.Set("retval", opts.retval);
  out.Set("duration", opts.duration);
  return out;
}

// ringBuffer(map, callback(data, offsets, count), drainMs, maxBatch, batchBytes): RingBuffer
Napi::Value BpfObject::OpenRingBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = Map(env, "ringBuffer", Str(info, 0, "map"));
  if (bpf_map__type(map) != BPF_MAP_TYPE_RINGBUF) {
    throw MakeError(env, "ringBuffer", EINVAL, std::string("map ") + bpf_map__name(map) + " is not a ring buffer");
  }
  if (info.Length() < 2 || !info[1].IsFunction()) throw Napi::TypeError::New(env, "expected a callback");
  uint32_t drain_ms = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 5;
  uint32_t max_batch = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Uint32Value() : 4096;
  uint32_t batch_bytes =
      info.Length() > 4 && info[4].IsNumber() ? info[4].As<Napi::Number>().Uint32Value() : 256 * 1024;
  Napi::Object rb = RingBuffer::constructor->New({});
  RingBuffer::Unwrap(rb)->Start(env, bpf_map__fd(map), info[1].As<Napi::Function>(), drain_ms, max_batch,
                                batch_bytes);
  return rb;
}

// btf(): { structs: { [name]: struct }, mapValues: { [map]: struct name } } from the object's BTF (valid once opened,
// no privileges needed), or null when the object carries none. Used to check hand-written record layouts against the
// C structs they mirror.
Napi::Value BpfObject::Btf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_object* obj = Require(env, "btf");
  struct btf* btf = bpf_object__btf(obj);
  if (btf == nullptr) return env.Null();
  // btf(names?): only the structs named, when given. Describing every struct of an object (a hundred and more: the
  // kernel types its programs read) is most of the cost, and a load checks one or two.
  std::set<std::string> only;
  bool restricted = info.Length() > 0 && info[0].IsArray();
  if (restricted) {
    Napi::Array names = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < names.Length(); i++) {
      Napi::Value v = names.Get(i);
      if (v.IsString()) only.insert(v.As<Napi::String>().Utf8Value());
    }
  }
  Napi::Object structs = Napi::Object::New(env);
  __u32 count = btf__type_cnt(btf);
  for (__u32 id = 1; id < count; id++) {
    const struct btf_type* t = btf__type_by_id(btf, id);
    if (t == nullptr || !btf_is_struct(t) || t->name_off == 0) continue;
    const char* name = btf__name_by_offset(btf, t->name_off);
    // A forward declaration has no members and no size; a complete definition of the same name wins.
    if (name == nullptr || name[0] == '\0' || structs.Has(name)) continue;
    if (restricted && only.count(name) == 0) continue;
    structs.Set(name, DescribeComposite(env, btf, t, 0));
  }
  Napi::Object values = Napi::Object::New(env);
  struct bpf_map* map;
  bpf_object__for_each_map(map, obj) {
    __u32 vid = bpf_map__btf_value_type_id(map);
    if (vid == 0) continue;
    int resolved = btf__resolve_type(btf, vid);
    const struct btf_type* vt = resolved < 0 ? nullptr : btf__type_by_id(btf, resolved);
    if (vt == nullptr || !btf_is_struct(vt) || vt->name_off == 0) continue;
    values.Set(bpf_map__name(map), btf__name_by_offset(btf, vt->name_off));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("structs", structs);
  out.Set("mapValues", values);
  return out;
}

Napi::Value BpfObject::Close(const Napi::CallbackInfo& info) {
  if (loading_) {
    close_after_load_ = true;
    return info.Env().Undefined();
  }
  if (obj_ != nullptr) bpf_object__close(obj_);
  obj_ = nullptr;
  bytes_.clear();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------------------------
// Link
// ---------------------------------------------------------------------------------------------------------------

Napi::FunctionReference* Link::constructor = nullptr;

Napi::Function Link::Define(Napi::Env env) {
  return DefineClass(env, "Link", {
    InstanceMethod<&Link::Destroy>("destroy"),
    InstanceMethod<&Link::DestroyAsync>("destroyAsync"),
    InstanceMethod<&Link::Id>("id"),
    InstanceMethod<&Link::Fd>("fd"),
  });
}

Link::Link(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Link>(info) {}

Link::~Link() {
  if (link_ != nullptr) bpf_link__destroy(link_);
  link_ = nullptr;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void Link::Adopt(struct bpf_link* link) { link_ = link; }

void Link::AdoptFd(int fd) { fd_ = fd; }

Napi::Value Link::Destroy(const Napi::CallbackInfo& info) {
  if (link_ != nullptr) bpf_link__destroy(link_);
  link_ = nullptr;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

// The kernel's link id (0 when the attachment is not a BPF link, e.g. a legacy perf-event attach).
Napi::Value Link::Id(const Napi::CallbackInfo& info) {
  uint32_t id = 0;
  int fd = link_ != nullptr ? bpf_link__fd(link_) : fd_;
  if (fd >= 0) {
    struct bpf_link_info linfo = {};
    uint32_t len = sizeof(linfo);
    if (bpf_obj_get_info_by_fd(fd, &linfo, &len) == 0) id = linfo.id;
  }
  return Napi::Number::New(info.Env(), id);
}

Napi::Value Link::Fd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), link_ ? bpf_link__fd(link_) : fd_);
}

}  // namespace probescope
