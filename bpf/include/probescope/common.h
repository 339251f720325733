/* Everything a probescope BPF program includes first. */
#pragma once
#include "vmlinux.h"
#include "regs.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "go_abi.h"
#include "strings.h"
#include "events.h"
#include "targets.h"

char LICENSE[] SEC("license") = "GPL";
