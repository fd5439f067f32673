// The sandbox's seccomp-bpf filter: a deny-list of system calls a function never needs (mount,
// ptrace, kernel modules, bpf, keyrings, new namespaces, raw sockets, device nodes, clock
// setting...), each answered with EPERM rather than a kill so that a runtime probing for a
// feature degrades instead of dying. clone3 answers ENOSYS so that libc falls back to clone(),
// whose flags the filter can inspect (clone3 passes them in memory, out of BPF's reach).
// Syscalls of another ABI (i386 via int 0x80, x32) kill the process: the filter only speaks the
// native one.
//
// The filter is compiled once per backend (libseccomp) and exported as a raw BPF program that the
// sandbox's init installs in the command right before execve (after NO_NEW_PRIVS).
// Thread-safety: pure functions.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace stratus {

// Syscalls denied whatever their arguments (EPERM).
std::span<const std::string_view> seccompDeniedSyscalls();

// The filter as a raw BPF program: an array of struct sock_filter, native byte order.
Result<std::string> buildSeccompProgram();

}  // namespace stratus
