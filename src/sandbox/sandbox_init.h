// Internal to the sandbox component: how a sandbox's first process comes to life.
//
// 1. The worker thread clone()s the child with CLONE_VM|CLONE_VFORK (like posix_spawn) into new
//    pid, mount, ipc, uts and network namespaces. The child shares the worker's memory until it
//    execs, and the worker is MULTI-THREADED: another thread may have held the malloc lock (or
//    any lock) at the moment of the clone. So the child must not allocate, lock, or call
//    anything but raw system calls: the parent prepares everything -- every path, mount option,
//    argv/envp array, error description -- before clone() (ChildPlan), and the child only walks
//    that plan (sandboxChildMain): join the cgroup, build the new root, pivot_root.
// 2. The child then execs stratus-sandbox-init (init_main.cc), a small static binary embedded
//    in this library and kept in a sealed memfd, so the sandbox's pid 1 does not hold a
//    copy-on-write image of the worker (which would make the worker page-fault on every page it
//    writes after each sandbox creation, and make pid 1 look huge to the OOM killer).
// 3. Init waits for the parent's go byte, spawns the command (uid/gid drop, no capabilities,
//    NO_NEW_PRIVS, chdir, execve) and reaps until it exits.
//
// A failure anywhere before the command's execve is reported to the parent as a
// ChildError{step, errno} on a pipe; the pipe reaching EOF without a record means the command
// was exec'd.
//
// Hardening: the /proc masks are further ops before pivot_root; the user and cgroup namespaces
// are unshared by init once it is in its cgroup (so the mount, pid and network namespaces stay
// owned by the host's user namespace: root of the sandbox's user namespace has no power over
// them); the capability bounding set, rlimits and the seccomp filter are set in the command
// right before its execve.
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
  kWriteFile = 10,    // write data to the existing file a (cgroup and procfs knobs)
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

// Steps outside the op list; reported as negative step numbers. Values are shared with the init
// binary.
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
  kStepExecInit = -11,
  kStepInitArgs = -12,
  kStepUnshare = -13,       // init: unshare(CLONE_NEWUSER | CLONE_NEWCGROUP)
  kStepUserIds = -14,       // init: become root of the new user namespace
  kStepCapabilities = -15,  // command: clear the bounding and ambient capability sets
  kStepRlimits = -16,
  kStepSeccomp = -17,
  kStepJoinNetns = -18,  // child: setns into the network namespace taken from the pool
};

// Init's hardening flags (its FLAGS argument, see init_main.cc).
enum InitFlags : uint32_t {
  kInitUserNs = 1,    // unshare a user namespace; the worker writes its uid/gid maps
  kInitCgroupNs = 2,  // unshare a cgroup namespace (after the worker moved us into the cgroup)
};

// Bytes on the sync socket: worker -> init "go" (in the cgroup), init -> worker "user namespace
// created", worker -> init "maps written".
constexpr char kSyncGo = 'g';
constexpr char kSyncUserNs = 'u';
constexpr char kSyncMapped = 'm';

struct ChildError {
  int32_t step;  // index into ChildPlan::ops, or an ExecStep
  int32_t err;   // errno
};
static_assert(sizeof(ChildError) == 8);

struct ChildPlan {
  const ChildOp* ops = nullptr;
  size_t opCount = 0;
  // The init binary (a memfd) and its argv/envp (see init_main.cc for the argv layout).
  int initFd = -1;
  char* const* initArgv = nullptr;
  char* const* initEnvp = nullptr;
  // Fds that survive into init; every other fd is closed.
  int syncFd = -1;   // read end: the go byte arrives once the parent placed us in the cgroup
  int errorFd = -1;  // write end: ChildError records
  int stdoutFd = -1;
  int stderrFd = -1;
  // A network namespace made ahead of time (the backend's pool), or -1: the child was cloned
  // with CLONE_NEWNET. The child joins it first thing, while it is still the host's root (so
  // the namespace stays owned by the host's user namespace), and closes it with every other fd.
  int netnsFd = -1;
};

// ifconfig lo up (SIOCGIFFLAGS/SIOCSIFFLAGS) in the calling thread's network namespace; 0 or -1
// with errno. Raw system calls only: safe in the clone child. The op kLoopbackUp and the
// backend's netns pool both use it, so a pooled namespace's loopback is the same as a fresh one's.
int bringLoopbackUp();

// clone() entry point of the sandbox's first process (CLONE_VM|CLONE_VFORK): runs the ops and
// execs init. Never returns.
int sandboxChildMain(void* plan);

}  // namespace stratus::sandbox_internal
