// Zygote: the worker's handle on a runtime template process (issue 4). The template
// (src/runtime/python3/zygote.py, src/runtime/nodejs/zygote.js: one protocol) is an interpreter
// with the runtime already loaded; spawnInto forks a new runtime from it into a sandbox that was
// just created with a placeholder command (ProcessSandboxBackend::create, as any sandbox), so the
// new process shares the template's memory copy-on-write and skips interpreter start-up.
//
// The child joins the cgroup and every namespace of the sandbox's init and takes exactly the
// credentials, limits and seccomp filter that init gives a command (read from init's own
// arguments, /proc/<init>/cmdline, so the two paths cannot drift apart unnoticed: the escape
// suite runs on both). Nothing function-specific is ever sent to the template: children start
// blank and get their function over the runtime socket.
//
// Thread-safety: spawnInto may be called from one thread at a time (a mutex serialises). start*()
// must run on a thread that outlives the template (its PR_SET_PDEATHSIG is tied to that thread).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace stratus {

class Zygote {
 public:
  // Runs `python3 -u -S script` with a control socket on fd 3; returns once it is started.
  static Result<std::unique_ptr<Zygote>> startPython(const std::filesystem::path& script);
  // Runs `node --single-threaded nodeFlags... script` (zygote.js, next to its native half
  // stratus_fork.node) likewise. Heap flags (--max-old-space-size) are fixed at node's start, so
  // runtimes that need other ones need another template.
  static Result<std::unique_ptr<Zygote>> startNode(const std::filesystem::path& script,
                                                   const std::vector<std::string>& nodeFlags = {});
  ~Zygote();  // closes the control socket (the template exits), kills and reaps it
  Zygote(const Zygote&) = delete;
  Zygote& operator=(const Zygote&) = delete;

  // Forks a process into the sandbox whose init has host pid initPid; its stdout/stderr are
  // dups of the given fds, its environment env. argv empty: the runtime's main loop (connects
  // to $STRATUS_RUNTIME_SOCKET); otherwise a script (python3 or JS, the template's language) and
  // its arguments. Returns the new process's host pid once it is set up (in the sandbox,
  // unprivileged, filtered). kUnavailable: the template is gone or did not answer in time (it is
  // killed then); start a new one.
  Result<pid_t> spawnInto(pid_t initPid, int stdoutFd, int stderrFd,
                          const std::vector<std::string>& env,
                          const std::vector<std::string>& argv = {});
  pid_t pid() const { return pid_; }

 private:
  Zygote(pid_t pid, UniqueFd control) : pid_(pid), control_(std::move(control)) {}
  static Result<std::unique_ptr<Zygote>> start(const std::vector<std::string>& argv,
                                               const std::vector<std::string>& env,
                                               const std::string& what);
  pid_t pid_;
  UniqueFd control_;
  std::mutex mu_;
};

}  // namespace stratus
