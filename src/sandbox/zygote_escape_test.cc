// The sandbox escape suite (escape_suite.h) on sandboxes whose process was forked from a template
// (Zygote: python3 and nodejs) rather than exec'd by the sandbox's init: every attempt must be
// contained exactly as in a fresh sandbox. The nodejs path runs testdata/node_escape_shim.js in
// the forked node, which checks that process's own confinement and then runs the probe.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "common/fs.h"
#include "runtime/runtime.h"
#include "sandbox/escape_suite.h"
#include "sandbox/zygote.h"

namespace stratus {
namespace {

// Ends the sandbox once the forked process pid is gone (as the worker does when a templated
// runtime exits): the placeholder keeps init alive until then.
void endWithProcess(pid_t pid, pid_t initPid) {
  int probe = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  int init = static_cast<int>(::syscall(SYS_pidfd_open, initPid, 0));
  std::thread([probe, init] {
    pollfd p{probe, POLLIN, 0};
    if (probe >= 0) ::poll(&p, 1, 60'000);
    if (init >= 0) ::syscall(SYS_pidfd_send_signal, init, SIGKILL, nullptr, 0);
    if (probe >= 0) ::close(probe);
    if (init >= 0) ::close(init);
  }).detach();
}

// The sandbox for s, made as the worker makes a templated one: created holding a placeholder,
// then `script` (argv for the template's child) forked into it from the template.
Result<std::unique_ptr<Sandbox>> createAndSpawn(Zygote& zygote, ProcessSandboxBackend& b,
                                                const SandboxSpec& s,
                                                const std::vector<std::string>& script) {
  SandboxSpec holder = s;
  holder.argv = {"/usr/bin/sleep", "infinity"};
  holder.stdoutFd = -1;
  holder.stderrFd = -1;
  ASSIGN_OR_RETURN(std::unique_ptr<Sandbox> sb, b.create(holder));
  std::vector<std::string> env = s.env;
  env.push_back("PATH=/usr/local/bin:/usr/bin:/bin");
  ASSIGN_OR_RETURN(pid_t pid, zygote.spawnInto(sb->pid(), s.stdoutFd, s.stderrFd, env, script));
  endWithProcess(pid, sb->pid());
  return sb;
}

const SandboxCreationPath kTemplated{
    "templated",
    [](ProcessSandboxBackend& b, const SandboxSpec& s) -> Result<std::unique_ptr<Sandbox>> {
      // One template for the test binary (started from the test's main thread, which lives on).
      static std::unique_ptr<Zygote> zygote;
      if (!zygote) {
        ASSIGN_OR_RETURN(zygote, Zygote::startPython(STRATUS_PYTHON_ZYGOTE));
      }
      // s.argv is {"/usr/bin/python3", script, args...}: the template runs the script itself.
      return createAndSpawn(*zygote, b, s, {s.argv.begin() + 1, s.argv.end()});
    }};

INSTANTIATE_TEST_SUITE_P(Templated, SandboxEscapeTest,
                         ::testing::Combine(::testing::Values(kTemplated),
                                            ::testing::ValuesIn(sandboxEscapeAttempts())),
                         sandboxEscapeTestName);

// The runtime assets as the worker installs them (zygote.js next to stratus_fork.node), once per
// test binary, removed at exit.
struct NodeAssets {
  NodeAssets() {
    char tmpl[] = "/tmp/stratus-node-assets-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) dir = tmpl;
    if (!dir.empty() && !runtime::installAssets(dir).isOk()) dir.clear();
  }
  ~NodeAssets() {
    if (!dir.empty()) (void)removeTree(dir);
  }
  std::filesystem::path dir;
};

const SandboxCreationPath kNodeTemplated{
    "nodetemplated",
    [](ProcessSandboxBackend& b, const SandboxSpec& s) -> Result<std::unique_ptr<Sandbox>> {
      static NodeAssets assets;
      static std::unique_ptr<Zygote> zygote;
      if (assets.dir.empty()) return internalError("install the runtime assets");
      if (!zygote) {
        ASSIGN_OR_RETURN(zygote, Zygote::startNode(assets.dir / "nodejs" / "zygote.js"));
      }
      std::ifstream in(STRATUS_NODE_ESCAPE_SHIM);
      std::stringstream shim;
      shim << in.rdbuf();
      RETURN_IF_ERROR(writeFileAtomic(s.codeDir / "node_escape_shim.js", shim.str(), 0644));
      // s.argv is {"/usr/bin/python3", script, args...}: the forked node runs the shim, which
      // runs the script.
      std::vector<std::string> script = {"/code/node_escape_shim.js"};
      script.insert(script.end(), s.argv.begin() + 1, s.argv.end());
      return createAndSpawn(*zygote, b, s, script);
    }};

INSTANTIATE_TEST_SUITE_P(NodeTemplated, SandboxEscapeTest,
                         ::testing::Combine(::testing::Values(kNodeTemplated),
                                            ::testing::ValuesIn(sandboxEscapeAttempts())),
                         sandboxEscapeTestName);

}  // namespace
}  // namespace stratus
