#include "sandbox/sandbox_init.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

// Everything in this file runs in a CLONE_VM child of a multi-threaded process: only system call
// wrappers, no allocation, no locks, no C++ library calls that might allocate, and nothing but
// its own stack is written to (it shares the worker's memory).

namespace stratus::sandbox_internal {
namespace {

void report(int fd, int32_t step, int err) {
  ChildError e{step, err};
  // A short write cannot happen for 8 bytes on a pipe; nothing to do if the parent is gone.
  (void)!::write(fd, &e, sizeof e);
}

[[noreturn]] void fail(const ChildPlan& p, int32_t step, int err) {
  report(p.errorFd, step, err);
  ::_exit(127);
}

// Closes every fd except the (up to 4) given ones. Other threads of the worker may have created
// fds without CLOEXEC, or fds of a concurrent create(); none of them may leak into a sandbox.
void closeAllExcept(int a, int b, int c, int d, int e) {
  int keep[5] = {a, b, c, d, e};
  // Insertion sort of 5 ints, then close the gaps between them.
  for (int i = 1; i < 5; ++i) {
    for (int j = i; j > 0 && keep[j - 1] > keep[j]; --j) {
      int t = keep[j];
      keep[j] = keep[j - 1];
      keep[j - 1] = t;
    }
  }
  unsigned next = 0;
  for (int k : keep) {
    if (k < 0 || static_cast<unsigned>(k) < next) continue;
    if (static_cast<unsigned>(k) > next) ::syscall(SYS_close_range, next, k - 1, 0);
    next = static_cast<unsigned>(k) + 1;
  }
  ::syscall(SYS_close_range, next, ~0U, 0);
}

int runOp(const ChildOp& op) {
  switch (op.kind) {
    case OpKind::kMount:
      return ::mount(op.a, op.b, op.fstype, op.flags, op.data);
    case OpKind::kMkdir:
      if (::mkdir(op.a, static_cast<mode_t>(op.flags)) == 0) return 0;
      return (op.ignoreExist && errno == EEXIST) ? 0 : -1;
    case OpKind::kTouch: {
      int fd = ::open(op.a, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (fd < 0) return (op.ignoreExist && errno == EEXIST) ? 0 : -1;
      ::close(fd);
      return 0;
    }
    case OpKind::kSymlink:
      return ::symlink(op.a, op.b);
    case OpKind::kChdir:
      return ::chdir(op.a);
    case OpKind::kPivotRoot:
      // pivot_root(".", "."): the old root ends up stacked on the new one, and is then detached
      // with umount2(".", MNT_DETACH) -- no directory for the old root is needed.
      return static_cast<int>(::syscall(SYS_pivot_root, ".", "."));
    case OpKind::kUmountDetach:
      return ::umount2(op.a, MNT_DETACH);
    case OpKind::kSetHostname:
      return ::sethostname(op.a, std::strlen(op.a));
    case OpKind::kWriteFile: {
      int fd = ::open(op.a, O_WRONLY | O_CLOEXEC);
      if (fd < 0) return -1;
      ssize_t n = ::write(fd, op.data, std::strlen(op.data));
      int saved = errno;
      ::close(fd);
      errno = saved;
      return n < 0 ? -1 : 0;
    }
    case OpKind::kLoopbackUp:
      return bringLoopbackUp();
  }
  errno = EINVAL;
  return -1;
}

}  // namespace

int bringLoopbackUp() {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::memcpy(ifr.ifr_name, "lo", 3);
  int rc = ::ioctl(s, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    rc = ::ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  int saved = errno;
  ::close(s);
  errno = saved;
  return rc;
}

int sandboxChildMain(void* arg) {
  const ChildPlan& p = *static_cast<const ChildPlan*>(arg);
  // Dies with the creating thread (the setting survives the exec of init). The race of the
  // parent dying before this prctl is covered by the go byte: init then reads EOF and exits.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);

  // We share the worker's memory, so none of its signal handlers may ever run here: the parent
  // blocked all signals around clone(); reset every disposition to default before unblocking.
  // (SIG_IGN would also survive execve, and an ignored SIGCHLD would break init's reaping.)
  struct KernelSigaction {  // the kernel's layout, not glibc's struct sigaction
    void* handler;
    unsigned long flags;
    void* restorer;
    uint64_t mask;
  } dfl = {};  // SIG_DFL is 0
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, 8);
  }
  uint64_t empty = 0;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, nullptr, 8);

  // A pooled network namespace is joined before anything else, as the host's root (setns needs
  // CAP_SYS_ADMIN over the namespace's owner, the host's user namespace); closeAllExcept then
  // closes its fd, so it never reaches init or the command.
  if (p.netnsFd >= 0 && ::setns(p.netnsFd, CLONE_NEWNET) != 0) fail(p, kStepJoinNetns, errno);

  closeAllExcept(p.syncFd, p.errorFd, p.stdoutFd, p.stderrFd, p.initFd);

  for (size_t i = 0; i < p.opCount; ++i) {
    if (runOp(p.ops[i]) != 0 && !p.ops[i].bestEffort) fail(p, static_cast<int32_t>(i), errno);
  }

  // The four fds travel into init (their numbers are in its argv); the memfd does not.
  const int inherited[4] = {p.syncFd, p.errorFd, p.stdoutFd, p.stderrFd};
  for (int fd : inherited) {
    if (fd >= 0 && ::fcntl(fd, F_SETFD, 0) != 0) fail(p, kStepExecInit, errno);
  }
  ::syscall(SYS_execveat, p.initFd, "", p.initArgv, p.initEnvp, AT_EMPTY_PATH);
  fail(p, kStepExecInit, errno);
}

}  // namespace stratus::sandbox_internal
