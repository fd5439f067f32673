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

// Everything in this file runs in a child of a multi-threaded process: only async-signal-safe
// system call wrappers, no allocation, no locks, no C++ library calls that might allocate.

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
void closeAllExcept(int a, int b, int c, int d) {
  int keep[4] = {a, b, c, d};
  // Insertion sort of 4 ints, then close the gaps between them.
  for (int i = 1; i < 4; ++i) {
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
    case OpKind::kLoopbackUp: {
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
  }
  errno = EINVAL;
  return -1;
}

// The command's process: shares init's memory (CLONE_VM|CLONE_VFORK, like posix_spawn), so it
// only touches its own stack and makes raw system calls until execve.
int commandMain(void* arg) {
  const ChildPlan& p = *static_cast<const ChildPlan*>(arg);
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) fail(p, kStepStdio, errno);
  // Lift the sources above 2 first so that dup2 onto 0..2 cannot clobber one of them (and so
  // that no dup2 is a no-op that would leave O_CLOEXEC set: init closed 0..2, so the open above
  // may well have returned 0).
  int in = ::fcntl(devnull, F_DUPFD_CLOEXEC, 3);
  if (in < 0) fail(p, kStepStdio, errno);
  int out = ::fcntl(p.stdoutFd >= 0 ? p.stdoutFd : devnull, F_DUPFD_CLOEXEC, 3);
  if (out < 0) fail(p, kStepStdio, errno);
  int err = ::fcntl(p.stderrFd >= 0 ? p.stderrFd : devnull, F_DUPFD_CLOEXEC, 3);
  if (err < 0) fail(p, kStepStdio, errno);
  if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) {
    fail(p, kStepStdio, errno);
  }
  // Everything else (including the error pipe) closes at execve.
  ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);

  // Raw syscalls: glibc's setuid() would try to broadcast the change to the worker's other
  // threads, which do not exist in this process.
  // Init runs with oom_score_adj -1000 (it is a copy of the worker's address space, so its RSS
  // looks large to the OOM killer); the command goes back to 0 so that it is the victim.
  {
    int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0", 1) != 1) fail(p, kStepOomScore, errno);
    ::close(fd);
  }
  if (::syscall(SYS_setgroups, 0, nullptr) != 0) fail(p, kStepSetgroups, errno);
  if (::syscall(SYS_setresgid, p.gid, p.gid, p.gid) != 0) fail(p, kStepSetgid, errno);
  if (::syscall(SYS_setresuid, p.uid, p.uid, p.uid) != 0) fail(p, kStepSetuid, errno);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(p, kStepNoNewPrivs, errno);
  if (::chdir(p.cwd) != 0) fail(p, kStepChdir, errno);

  // Like execvp: ENOENT/ENOTDIR move on to the next candidate; any other error is remembered.
  int firstErr = ENOENT;
  for (const char* const* path = p.execPaths; *path != nullptr; ++path) {
    ::execve(*path, p.argv, p.envp);
    if (errno != ENOENT && errno != ENOTDIR && firstErr == ENOENT) firstErr = errno;
  }
  fail(p, kStepExec, firstErr);
}

int exitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

}  // namespace

void runSandboxInit(const ChildPlan& p) {
  // Dies with the creating thread. The parent-death race (parent gone before this prctl) is
  // covered by the sync pipe: the read before spawning the command then sees EOF.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  closeAllExcept(p.syncFd, p.errorFd, p.stdoutFd, p.stderrFd);

  // The worker may ignore SIGPIPE or SIGCHLD, block signals, or install handlers; a sandbox
  // starts from default dispositions and an empty mask (handlers reset at execve anyway, but
  // SIG_IGN would survive it, and an ignored SIGCHLD would make wait4 below useless).
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

  for (size_t i = 0; i < p.opCount; ++i) {
    if (runOp(p.ops[i]) != 0 && !p.ops[i].bestEffort) fail(p, static_cast<int32_t>(i), errno);
  }

  // The parent moves us into the sandbox's cgroup while we set up the root (on cgroup v1 the
  // migration waits for an RCU grace period, so overlapping the two saves milliseconds); the
  // command must not start before that is done. EOF instead of the go byte: the parent is gone.
  char go = 0;
  ssize_t n;
  do {
    n = ::read(p.syncFd, &go, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) ::_exit(126);
  ::close(p.syncFd);

  // The vfork-style clone returns once the command has exec'd (or exited after reporting).
  pid_t cmd = ::clone(commandMain, p.commandStackTop, CLONE_VM | CLONE_VFORK | SIGCHLD,
                      const_cast<ChildPlan*>(&p));
  if (cmd < 0) fail(p, kStepSpawn, errno);
  // Init holds no fds: the command owns stdout/stderr, and the error pipe reaches EOF as soon as
  // the command's copy closes at execve.
  ::syscall(SYS_close_range, 0U, ~0U, 0);

  // pid 1 of the namespace: reap everything, leave when the command leaves (the kernel then
  // kills whatever else is left in the namespace).
  for (;;) {
    int status = 0;
    pid_t r = ::wait4(-1, &status, __WALL, nullptr);
    if (r == cmd) ::_exit(exitCodeOf(status));
    if (r < 0 && errno != EINTR) ::_exit(127);
  }
}

}  // namespace stratus::sandbox_internal
