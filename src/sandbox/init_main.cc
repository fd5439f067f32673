// stratus-sandbox-init: pid 1 of a process sandbox (see sandbox_init.h for how it is started).
//
// A small static binary, embedded into the sandbox library and exec'd from a memfd after the
// sandbox's root has been set up, so that pid 1 is a fresh, tiny process rather than a
// copy-on-write image of the worker. It waits for the worker's go byte (the sandbox is then in its
// cgroup), spawns the command, and reaps every process of the pid namespace until the command
// exits; it then exits with the command's status (a signal becomes 128+signo: pid 1 cannot
// re-raise a signal on itself).
//
// argv: init ERROR_FD SYNC_FD STDOUT_FD STDERR_FD UID GID CWD N PATH_1..PATH_N ARGV...
//   PATH_i are the candidates for the command's executable (the parent did the PATH search),
//   ARGV is the command's argv; envp is the command's environment.
// Failures before the command's execve are written to ERROR_FD as a ChildError.
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
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

int exitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

}  // namespace

int main(int argc, char** argv, char** envp) {
  long v[6];  // the six numeric arguments
  if (argc < 10) ::_exit(125);
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
  long nPaths = 0;
  if (!parseInt(argv[8], &nPaths) || nPaths < 1 || 9 + nPaths >= argc) {
    fail(si::kStepInitArgs, EINVAL);
  }
  char** paths = argv + 9;
  char** cmdArgv = argv + 9 + nPaths;
  // The command must not inherit the error pipe past its own execve.
  ::fcntl(errorFd, F_SETFD, FD_CLOEXEC);

  // The worker moves us into the cgroup (on v2 without CLONE_INTO_CGROUP) before it sends the
  // go byte; EOF instead means it died or gave up.
  char go = 0;
  ssize_t n;
  do {
    n = ::read(syncFd, &go, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) ::_exit(126);
  ::close(syncFd);

  // Init itself should never be the OOM killer's victim (killing it kills the whole sandbox).
  // Lowering the score needs CAP_SYS_RESOURCE, which a worker may lack: best effort.
  if (int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC); fd >= 0) {
    (void)!::write(fd, "-1000", 5);
    ::close(fd);
  }

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
    // Leaving uid 0 for a non-zero uid clears the permitted and effective capability sets.
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) fail(si::kStepSetgroups, errno);
    if (::syscall(SYS_setresgid, gid, gid, gid) != 0) fail(si::kStepSetgid, errno);
    if (::syscall(SYS_setresuid, uid, uid, uid) != 0) fail(si::kStepSetuid, errno);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(si::kStepNoNewPrivs, errno);
    if (::chdir(cwd) != 0) fail(si::kStepChdir, errno);
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
