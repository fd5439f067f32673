// The sandbox escape suite (escape_suite.h) on sandboxes whose process was forked from the
// python3 template (Zygote) rather than exec'd by the sandbox's init: every attempt must be
// contained exactly as in a fresh sandbox.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <thread>

#include "sandbox/escape_suite.h"
#include "sandbox/zygote.h"

namespace stratus {
namespace {

const SandboxCreationPath kTemplated{
    "templated",
    [](ProcessSandboxBackend& b, const SandboxSpec& s) -> Result<std::unique_ptr<Sandbox>> {
      // One template for the test binary (started from the test's main thread, which lives on).
      static std::unique_ptr<Zygote> zygote;
      if (!zygote) {
        ASSIGN_OR_RETURN(zygote, Zygote::startPython(STRATUS_PYTHON_ZYGOTE));
      }
      SandboxSpec holder = s;
      holder.argv = {"/usr/bin/sleep", "infinity"};
      holder.stdoutFd = -1;
      holder.stderrFd = -1;
      ASSIGN_OR_RETURN(std::unique_ptr<Sandbox> sb, b.create(holder));
      // s.argv is {"/usr/bin/python3", script, args...}: the template runs the script itself.
      std::vector<std::string> script(s.argv.begin() + 1, s.argv.end());
      std::vector<std::string> env = s.env;
      env.push_back("PATH=/usr/local/bin:/usr/bin:/bin");
      ASSIGN_OR_RETURN(pid_t pid,
                       zygote->spawnInto(sb->pid(), s.stdoutFd, s.stderrFd, env, script));
      // The placeholder keeps init alive; end the sandbox when the probe is done (as the worker
      // does when a templated runtime exits).
      int probe = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
      int init = static_cast<int>(::syscall(SYS_pidfd_open, sb->pid(), 0));
      std::thread([probe, init] {
        pollfd p{probe, POLLIN, 0};
        if (probe >= 0) ::poll(&p, 1, 60'000);
        if (init >= 0) ::syscall(SYS_pidfd_send_signal, init, SIGKILL, nullptr, 0);
        if (probe >= 0) ::close(probe);
        if (init >= 0) ::close(init);
      }).detach();
      return sb;
    }};

INSTANTIATE_TEST_SUITE_P(Templated, SandboxEscapeTest,
                         ::testing::Combine(::testing::Values(kTemplated),
                                            ::testing::ValuesIn(sandboxEscapeAttempts())),
                         sandboxEscapeTestName);

}  // namespace
}  // namespace stratus
