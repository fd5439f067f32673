#include "sandbox/seccomp_filter.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "common/unique_fd.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

namespace stratus {
namespace {

constexpr std::string_view kDenied[] = {
    // file systems and mounts
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "swapon",
    "swapoff",
    "quotactl",
    "quotactl_fd",
    // file handles bypass path-based checks (the "shocker" escape)
    "open_by_handle_at",
    "name_to_handle_at",
    // other processes' memory
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    // the kernel itself
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "iopl",
    "ioperm",
    "syslog",
    "acct",
    "lookup_dcookie",
    "reboot",
    "vhangup",
    "uselib",
    "fanotify_init",
    // keyrings are not namespaced
    "keyctl",
    "add_key",
    "request_key",
    // namespaces (clone/unshare are filtered by flag below)
    "setns",
    // the host's clock
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    // io_uring: a large attack surface that bypasses this filter for the ops it performs
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
};

constexpr uint64_t kNamespaceFlags[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                        CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};

struct CtxDeleter {
  void operator()(void* c) const { seccomp_release(c); }
};

Status rule(scmp_filter_ctx ctx, uint32_t action, const char* name,
            std::initializer_list<scmp_arg_cmp> args) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return Status::ok();  // not on this architecture
  int rc = seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(args.size()),
                                  args.size() == 0 ? nullptr : args.begin());
  if (rc != 0) return Status::fromErrno(-rc, std::string("seccomp rule for ") + name);
  return Status::ok();
}

}  // namespace

std::span<const std::string_view> seccompDeniedSyscalls() { return kDenied; }

Result<std::string> buildSeccompProgram() {
  std::unique_ptr<void, CtxDeleter> holder(seccomp_init(SCMP_ACT_ALLOW));
  scmp_filter_ctx ctx = holder.get();
  if (ctx == nullptr) return internalError("seccomp_init failed");
  // A syscall of another ABI (int 0x80 from a 64-bit process) would dodge every rule below.
  if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc != 0) {
    return Status::fromErrno(-rc, "seccomp: bad-arch action");
  }
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (std::string_view name : kDenied) {
    RETURN_IF_ERROR(rule(ctx, eperm, std::string(name).c_str(), {}));
  }
  RETURN_IF_ERROR(rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", {}));
  // One rule per flag: BPF can only test (arg & mask) == value, not "any bit of mask".
  for (uint64_t flag : kNamespaceFlags) {
    RETURN_IF_ERROR(rule(ctx, eperm, "clone", {SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)}));
    RETURN_IF_ERROR(rule(ctx, eperm, "unshare", {SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)}));
  }
  RETURN_IF_ERROR(
      rule(ctx, eperm, "unshare", {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWTIME, CLONE_NEWTIME)}));
  // Raw and packet sockets: sniffing and forging traffic. The type's low bits carry SOCK_RAW,
  // the high bits SOCK_NONBLOCK/SOCK_CLOEXEC.
  RETURN_IF_ERROR(rule(ctx, eperm, "socket", {SCMP_A0(SCMP_CMP_EQ, AF_PACKET)}));
  RETURN_IF_ERROR(rule(ctx, eperm, "socket", {SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW)}));
  // Device nodes (FIFOs and plain files stay allowed).
  for (mode_t type : {S_IFCHR, S_IFBLK}) {
    RETURN_IF_ERROR(rule(ctx, eperm, "mknod", {SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, type)}));
    RETURN_IF_ERROR(rule(ctx, eperm, "mknodat", {SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, type)}));
  }

  // libseccomp 2.5 exports only to an fd.
  UniqueFd mem(::memfd_create("stratus-seccomp", MFD_CLOEXEC));
  if (!mem) return Status::fromErrno(errno, "memfd_create for the seccomp program");
  if (int rc = seccomp_export_bpf(ctx, mem.get()); rc != 0) {
    return Status::fromErrno(-rc, "seccomp_export_bpf");
  }
  off_t size = ::lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % 8 != 0) return internalError("seccomp program has a bad size");
  std::string prog(static_cast<size_t>(size), '\0');
  if (::pread(mem.get(), prog.data(), prog.size(), 0) != size) {
    return Status::fromErrno(errno, "read back the seccomp program");
  }
  return prog;
}

}  // namespace stratus
