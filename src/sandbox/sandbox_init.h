// Internal to the sandbox component: the code that runs in a sandbox's first process, between
// clone() and the command's execve(), and the plan it follows.
//
// That process is cloned from a MULTI-THREADED worker: another thread may have held the malloc
// lock (or any lock) at the moment of the clone, so the child must not allocate, lock, or call
// anything but raw system calls. The parent therefore prepares everything -- every path, mount
// option, argv/envp array, error description -- before clone() (ChildPlan), and the child only
// walks that plan. A failure is reported to the parent as a ChildError{step, errno} on a CLOEXEC
// pipe; the pipe reaching EOF without a record means execve() succeeded.
//
// Hardening (user namespaces, seccomp, capability bounding set) slots in as further ops before
// pivot_root and further steps in the command's exec phase.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace stratus::sandbox_internal {

enum class OpKind : uint8_t {
  kMount = 1,         // mount(a, b, fstype, flags, data)
  kMkdir = 2,         // mkdir(a, flags as mode); EEXIST tolerated if ignoreExist
  kTouch = 3,         // create empty file a (a mount point for a file bind)
  kSymlink = 4,       // symlink(a -> target, at b)
  kChdir = 5,         // chdir(a)
  kPivotRoot = 6,     // pivot_root(".", ".") in the current directory
  kUmountDetach = 7,  // umount2(a, MNT_DETACH)
  kSetHostname = 8,   // sethostname(a)
  kLoopbackUp = 9,    // ifconfig lo up in the current network namespace
  kWriteFile = 10,    // write data to the existing file a (procfs knobs)
};

struct ChildOp {
  OpKind kind;
  bool ignoreExist = false;
  bool bestEffort = false;  // a failure is ignored (e.g. a knob that needs a missing capability)
  const char* a = nullptr;
  const char* b = nullptr;
  const char* fstype = nullptr;
  unsigned long flags = 0;
  const char* data = nullptr;
  const char* what = nullptr;  // "bind-mount /usr read-only at /usr", for the error message
};

// Steps of the exec phase (in the command's process); reported as negative step numbers.
enum ExecStep : int32_t {
  kStepSync = -1,  // never reported: the parent went away
  kStepSpawn = -2,
  kStepStdio = -3,
  kStepSetgroups = -4,
  kStepSetgid = -5,
  kStepSetuid = -6,
  kStepNoNewPrivs = -7,
  kStepChdir = -8,
  kStepExec = -9,
  kStepOomScore = -10,
};

struct ChildError {
  int32_t step;  // index into ChildPlan::ops, or an ExecStep
  int32_t err;   // errno
};
static_assert(sizeof(ChildError) == 8);

struct ChildPlan {
  const ChildOp* ops = nullptr;
  size_t opCount = 0;
  // Exec phase.
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* const* execPaths = nullptr;  // candidates for argv[0] (PATH search done up front)
  const char* cwd = nullptr;
  uid_t uid = 65534;
  gid_t gid = 65534;
  int stdoutFd = -1;  // -1: /dev/null
  int stderrFd = -1;
  // Plumbing.
  int syncFd = -1;   // read end: one byte arrives once the parent placed us in the cgroup;
                     // read just before the command is spawned
  int errorFd = -1;  // write end, CLOEXEC: ChildError records
  char* commandStackTop = nullptr;  // stack for the CLONE_VM|CLONE_VFORK command spawn
};

// Runs as the sandbox's pid 1: sets up the root, spawns the command, reaps until the command
// exits, then exits with its status (a signal becomes 128+signo, as in a shell).
[[noreturn]] void runSandboxInit(const ChildPlan& plan);

}  // namespace stratus::sandbox_internal
