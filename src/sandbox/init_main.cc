// stratus-sandbox-init: pid 1 of a process sandbox (see sandbox_init.h for how it is started).
//
// A small static binary, embedded into the sandbox library and exec'd from a memfd after the
// sandbox's root has been set up, so that pid 1 is a fresh, tiny process rather than a
// copy-on-write image of the worker. It waits for the worker's go byte (the sandbox is then in its
// cgroup), spawns the command, and reaps every process of the pid namespace until the command
// exits; it then exits with the command's status (a signal becomes 128+signo: pid 1 cannot
// re-raise a signal on itself).
//
// argv: init ERROR_FD SYNC_FD STDOUT_FD STDERR_FD UID GID CWD FLAGS NOFILE SECCOMP N
//            PATH_1..PATH_N ARGV...
//   FLAGS are InitFlags (user/cgroup namespace), NOFILE the command's RLIMIT_NOFILE (0: keep),
//   SECCOMP the BPF program to install in the command as hex ("-": none). PATH_i are the
//   candidates for the command's executable (the parent did the PATH search), ARGV is the
//   command's argv; envp is the command's environment.
// Failures before the command's execve are written to ERROR_FD as a ChildError.
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox_init.h"

using stratus::sandbox_internal::ChildError;
namespace si = stratus::sandbox_internal;

namespace {

int errorFd = -1;

[[noreturn]] void fail(int32_t step, int err) {
  ChildError e{step, err};
  (void)!::write(errorFd, &e, sizeof e);
  ::_exit(127);
}

bool parseInt(const char* s, long* out) {
  char* end = nullptr;
  errno = 0;
  long v = ::strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') return false;
  *out = v;
  return true;
}

// The seccomp program, decoded from hex (static: init has no heap to speak of).
sock_filter filterBuf[4096];

int hexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Returns the number of instructions, 0 for "-", -1 when malformed.
long decodeFilter(const char* hex) {
  if (hex[0] == '-' && hex[1] == '\0') return 0;
  unsigned char* out = reinterpret_cast<unsigned char*>(filterBuf);
  size_t n = 0;
  for (; hex[0] != '\0'; hex += 2) {
    int hi = hexVal(hex[0]);
    int lo = hex[1] == '\0' ? -1 : hexVal(hex[1]);
    if (hi < 0 || lo < 0 || n >= sizeof filterBuf) return -1;
    out[n++] = static_cast<unsigned char>(hi << 4 | lo);
  }
  if (n == 0 || n % sizeof(sock_filter) != 0) return -1;
  return static_cast<long>(n / sizeof(sock_filter));
}

bool readByte(int fd, char want) {
  char c = 0;
  ssize_t n;
  do {
    n = ::read(fd, &c, 1);
  } while (n < 0 && errno == EINTR);
  return n == 1 && c == want;
}

int exitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

}  // namespace

int main(int argc, char** argv, char** envp) {
  long v[6];  // the six numeric arguments
  if (argc < 13) ::_exit(125);
  for (int i = 0; i < 6; ++i) {
    if (!parseInt(argv[1 + i], &v[i])) ::_exit(125);
  }
  errorFd = static_cast<int>(v[0]);
  const int syncFd = static_cast<int>(v[1]);
  const int outFd = static_cast<int>(v[2]);
  const int errFd = static_cast<int>(v[3]);
  const uid_t uid = static_cast<uid_t>(v[4]);
  const gid_t gid = static_cast<gid_t>(v[5]);
  const char* cwd = argv[7];
  long flags = 0, nofile = 0, nPaths = 0;
  if (!parseInt(argv[8], &flags) || !parseInt(argv[9], &nofile) || nofile < 0) {
    fail(si::kStepInitArgs, EINVAL);
  }
  const long filterLen = decodeFilter(argv[10]);
  if (filterLen < 0) fail(si::kStepInitArgs, EINVAL);
  if (!parseInt(argv[11], &nPaths) || nPaths < 1 || 12 + nPaths >= argc) {
    fail(si::kStepInitArgs, EINVAL);
  }
  char** paths = argv + 12;
  char** cmdArgv = argv + 12 + nPaths;
  // The command must not inherit the error pipe past its own execve.
  ::fcntl(errorFd, F_SETFD, FD_CLOEXEC);

  // The worker moves us into the cgroup (on v2 without CLONE_INTO_CGROUP) before it sends the
  // go byte; EOF instead means it died or gave up.
  if (!readByte(syncFd, si::kSyncGo)) ::_exit(126);

  // Init itself should never be the OOM killer's victim (killing it kills the whole sandbox).
  // Lowering the score needs CAP_SYS_RESOURCE (in the host's user namespace, so before the
  // unshare below), which a worker may lack: best effort.
  if (int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC); fd >= 0) {
    (void)!::write(fd, "-1000", 5);
    ::close(fd);
  }

  // The user and cgroup namespaces come last, from here: the mount, pid, network, ipc and uts
  // namespaces were created (and the root built) by the host's root, so they belong to the
  // host's user namespace and root of the new one has no capability over them -- it cannot
  // mount, unmount a mask, or reconfigure the network even without seccomp. The cgroup namespace
  // is rooted at the cgroup the worker has just moved us into, so /proc/self/cgroup says "/".
  int nsFlags = 0;
  if (flags & si::kInitUserNs) nsFlags |= CLONE_NEWUSER;
  if (flags & si::kInitCgroupNs) nsFlags |= CLONE_NEWCGROUP;
  if (nsFlags != 0 && ::unshare(nsFlags) != 0) fail(si::kStepUnshare, errno);
  if (flags & si::kInitUserNs) {
    // Only the worker (CAP_SETUID on the host) may map a range of ids; it writes our uid_map and
    // gid_map, then we become root of the namespace: uid 0 inside = the tenant's first host uid.
    // Init thus stops being the host's root too.
    if (::write(syncFd, &si::kSyncUserNs, 1) != 1) fail(si::kStepUnshare, errno);
    if (!readByte(syncFd, si::kSyncMapped)) ::_exit(126);
    if (::syscall(SYS_setgroups, 0, nullptr) != 0 || ::syscall(SYS_setresgid, 0, 0, 0) != 0 ||
        ::syscall(SYS_setresuid, 0, 0, 0) != 0) {
      fail(si::kStepUserIds, errno);
    }
    // A change of credentials clears the parent-death signal: arm it again. The worker keeps its
    // end of the sync socket open until the command has exec'd, so a hang-up here means it died
    // before the re-arm.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail(si::kStepUserIds, errno);
    pollfd p{syncFd, POLLRDHUP, 0};
    if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP)) != 0) ::_exit(126);
  }
  ::close(syncFd);

  pid_t cmd = ::fork();
  if (cmd < 0) fail(si::kStepSpawn, errno);
  if (cmd == 0) {
    if (int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC); fd >= 0) {
      if (::write(fd, "0", 1) != 1) fail(si::kStepOomScore, errno);
      ::close(fd);
    }
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) fail(si::kStepStdio, errno);
    // Lift the sources above 2 first so that dup2 onto 0..2 can neither clobber one of them nor
    // be a no-op that leaves O_CLOEXEC set.
    int in = ::fcntl(devnull, F_DUPFD_CLOEXEC, 3);
    int out = ::fcntl(outFd >= 0 ? outFd : devnull, F_DUPFD_CLOEXEC, 3);
    int err = ::fcntl(errFd >= 0 ? errFd : devnull, F_DUPFD_CLOEXEC, 3);
    if (in < 0 || out < 0 || err < 0) fail(si::kStepStdio, errno);
    if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) {
      fail(si::kStepStdio, errno);
    }
    // Everything else (including the error pipe) closes at execve.
    ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    // An empty bounding set: no execve can ever grant a capability again, whatever file
    // capabilities or setuid bits it meets. Needs CAP_SETPCAP, so before the uid drop.
    for (int cap = 0; cap < 64; ++cap) {
      if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
        if (errno == EINVAL) break;  // past the kernel's last capability
        fail(si::kStepCapabilities, errno);
      }
    }
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
      fail(si::kStepCapabilities, errno);
    }
    rlimit core{0, 0};
    if (::setrlimit(RLIMIT_CORE, &core) != 0) fail(si::kStepRlimits, errno);
    if (nofile > 0) {
      rlimit cur{};
      if (::getrlimit(RLIMIT_NOFILE, &cur) != 0) fail(si::kStepRlimits, errno);
      rlim_t want = static_cast<rlim_t>(nofile);
      if (cur.rlim_max != RLIM_INFINITY && want > cur.rlim_max) want = cur.rlim_max;
      rlimit lim{want, want};
      if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) fail(si::kStepRlimits, errno);
    }
    // Leaving uid 0 for a non-zero uid clears the permitted and effective capability sets.
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) fail(si::kStepSetgroups, errno);
    if (::syscall(SYS_setresgid, gid, gid, gid) != 0) fail(si::kStepSetgid, errno);
    if (::syscall(SYS_setresuid, uid, uid, uid) != 0) fail(si::kStepSetuid, errno);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(si::kStepNoNewPrivs, errno);
    if (::chdir(cwd) != 0) fail(si::kStepChdir, errno);
    // Last: from here on the filter also judges init's own remaining calls (execve is allowed).
    if (filterLen > 0) {
      sock_fprog prog{static_cast<unsigned short>(filterLen), filterBuf};
      if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) {
        fail(si::kStepSeccomp, errno);
      }
    }
    // Like execvp: ENOENT/ENOTDIR move on to the next candidate; any other error is kept.
    int firstErr = ENOENT;
    for (long i = 0; i < nPaths; ++i) {
      ::execve(paths[i], cmdArgv, envp);
      if (errno != ENOENT && errno != ENOTDIR && firstErr == ENOENT) firstErr = errno;
    }
    fail(si::kStepExec, firstErr);
  }

  // Init holds no fds: the command owns stdout/stderr, and the error pipe reaches EOF as soon as
  // the command's copy closes at execve.
  ::syscall(SYS_close_range, 0U, ~0U, 0);
  for (;;) {
    int status = 0;
    pid_t r = ::wait4(-1, &status, __WALL, nullptr);
    if (r == cmd) ::_exit(exitCodeOf(status));
    if (r < 0 && errno != EINTR) ::_exit(127);
  }
}
