/* Reading a Go runtime type descriptor (internal/abi.Type) from BPF: its kind, flags and name.
 *
 * An interface value is (type, data): for an `any` the first word points at the dynamic type's abi.Type. The type's
 * name is not stored in it but at `Str`, a nameOff: an int32 offset from the start of the module's type data
 * (`runtime.types`, the `types` field of runtime.firstmoduledata). The name there is an abi.Name: a flags byte, the
 * length as a uvarint, then the bytes. A named type T shares its name with *T, stored as "*T": `TFlagExtraStar` in
 * TFlag then says to drop the leading '*' (done in user space, which gets the flags).
 *
 * A uprobe cannot fault a page in. A descriptor, an itab or a name on a page the process has not touched yet (or that
 * memory pressure took back) cannot be read here, while user space can read it through /proc/<pid>/mem, which faults
 * it in (for the process too, so the next record finds it). The `describe` helpers below leave the record a "where"
 * for that: the itab or the type, next to runtime.types (GoSymbols.ts `coldType`).
 *
 * Needs common.h first. */
#pragma once

/* internal/abi.Kind values (Kind_ & PS_GO_KIND_MASK) the probes look at. */
#define PS_GO_KIND_MASK 0x1f
#define PS_GO_KIND_POINTER 22
#define PS_GO_KIND_STRING 24

/* Where the fields of internal/abi.Type are; per target, since they come from the binary (or the shipped table). */
struct ps_go_type_offsets {
  u64 tflag;
  u64 kind;
  u64 str;
};

/* What a type descriptor says about itself. */
struct ps_go_type {
  u8 kind;
  u8 tflag;
};

/* Read kind and flags of the type at `typ`; 0 on success. */
static __always_inline int ps_go_type_read(u64 typ, const struct ps_go_type_offsets *off, struct ps_go_type *out) {
  if (typ == 0)
    return -1;
  if (bpf_probe_read_user(&out->tflag, 1, (const void *)(typ + off->tflag)) != 0 ||
      bpf_probe_read_user(&out->kind, 1, (const void *)(typ + off->kind)) != 0)
    return -1;
  out->kind &= PS_GO_KIND_MASK;
  return 0;
}

/* Where the name of type `typ` is (a runtime name: flags, uvarint length, bytes), or 0 when it cannot be found. */
static __always_inline u64 ps_go_type_name_at(u64 typ, u64 types, const struct ps_go_type_offsets *off) {
  if (typ == 0 || types == 0)
    return 0;
  s32 name_off = 0;
  if (bpf_probe_read_user(&name_off, sizeof(name_off), (const void *)(typ + off->str)) != 0 || name_off <= 0)
    return 0;
  return types + (u64)(s64)name_off;
}

/* Read the runtime name at `name` into dst; 0 bytes when it cannot be read (for one, its page not resident). */
static __always_inline u32 ps_go_name_read(void *dst, u32 cap, u64 name) {
  if (name == 0)
    return 0;
  /* flags, then a uvarint length: names shorter than 128 bytes take one byte, up to 16383 two. */
  u8 hdr[3] = {};
  if (bpf_probe_read_user(hdr, sizeof(hdr), (const void *)name) != 0)
    return 0;
  u64 len = hdr[1];
  u64 start = 2;
  if (hdr[1] & 0x80) {
    len = (hdr[1] & 0x7f) | ((u64)(hdr[2] & 0x7f) << 7);
    start = 3;
  }
  return ps_read_go_str(dst, cap, name + start, len);
}

/* Copy the name of the type at `typ` (as stored: maybe with the extra '*') into dst, at most `cap` bytes (a
 * power-of-two constant). `types` is the runtime address of the module's type data. Returns the bytes copied. */
static __always_inline u32 ps_go_type_name(void *dst, u32 cap, u64 typ, u64 types,
                                           const struct ps_go_type_offsets *off) {
  return ps_go_name_read(dst, cap, ps_go_type_name_at(typ, types, off));
}

/* Describe the type at `typ` for a record: kind and flags into *info, its name into dst (a power-of-two `cap`), the
 * name's length returned. When any of it could not be read (0 returned), *cold gets `typ` for user space. */
static __always_inline u32 ps_go_type_describe(void *dst, u32 cap, u64 typ, u64 types,
                                               const struct ps_go_type_offsets *off, struct ps_go_type *info,
                                               u64 *cold) {
  u32 len = 0;
  if (ps_go_type_read(typ, off, info) == 0)
    len = ps_go_type_name(dst, cap, typ, types, off);
  if (len == 0 && typ != 0 && types != 0)
    *cold = typ;
  return len;
}

/* The same for the dynamic type of an interface value whose itab is `tab` (its second word is the type). When any
 * of it could not be read, *cold gets the itab (the type word itself may be the cold one). */
static __always_inline u32 ps_go_itab_describe(void *dst, u32 cap, u64 tab, u64 types,
                                               const struct ps_go_type_offsets *off, struct ps_go_type *info,
                                               u64 *cold) {
  u64 unused = 0;
  u32 len = ps_go_type_describe(dst, cap, tab == 0 ? 0 : ps_read_u64(tab + 8), types, off, info, &unused);
  if (len == 0 && tab != 0 && types != 0)
    *cold = tab;
  return len;
}
