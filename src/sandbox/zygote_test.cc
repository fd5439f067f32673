// The python3 template (Zygote) under failure: a spawn that fails inside the sandbox must come
// back as a named error, quickly, and leave the template serving; the template and its helper
// processes must not outlive their owner. Runs as root against real sandboxes.
#include "sandbox/zygote.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include "common/fs.h"
#include "sandbox/process_sandbox.h"
#include "sandbox/sandbox_test_util.h"

#ifndef STRATUS_PYTHON_ZYGOTE
#error "STRATUS_PYTHON_ZYGOTE must name src/runtime/python3/zygote.py"
#endif

namespace stratus {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

// Every process whose command line names the template script and whose parent is `ppid`.
std::vector<pid_t> templateProcessesWithParent(pid_t ppid) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cmd = readFile(e.path() / "cmdline");
    auto stat = readFile(e.path() / "stat");
    if (!cmd.isOk() || !stat.isOk()) continue;
    if (cmd->find(STRATUS_PYTHON_ZYGOTE) == std::string::npos) continue;
    // stat: pid (comm) state ppid ...
    size_t close = stat->rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream in(stat->substr(close + 2));
    std::string state;
    pid_t parent = 0;
    in >> state >> parent;
    if (parent == ppid && state != "Z") out.push_back(std::stoi(name));
  }
  return out;
}

class ZygoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, cgroups)";
    ASSERT_NO_FATAL_FAILURE(
        sandbox_test::setUpSandboxHost("stratus-zygote-test-", tmp_, code_, parent_, backend_));
  }
  void TearDown() override {
    backend_.reset();
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }

  // A sandbox holding `sleep infinity`, as the worker creates for a templated runtime.
  std::unique_ptr<Sandbox> holder(int64_t pidsMax) {
    SandboxSpec s;
    s.id = "zt-" + sandbox_test::randomHex().substr(0, 12);
    s.argv = {"/usr/bin/sleep", "infinity"};
    s.env = {"PATH=/usr/bin:/bin"};
    s.pidsMax = pidsMax;
    auto sb = backend_->create(s);
    EXPECT_TRUE(sb.isOk()) << sb.status().toString();
    return sb.isOk() ? std::move(sb).value() : nullptr;
  }

  fs::path tmp_, code_;
  std::string parent_;
  std::unique_ptr<ProcessSandboxBackend> backend_;
};

// The runtime's fork inside the sandbox fails (pids.max leaves room for init, its command, the
// template's helper and its first child only). Before the fix the helper waited forever on a
// datagram socket for the runtime's pid, and the template with it: every later spawn timed out.
TEST_F(ZygoteTest, FailedForkInSandboxIsAnErrorAndTheTemplateServesOn) {
  auto z = Zygote::startPython(STRATUS_PYTHON_ZYGOTE);
  ASSERT_TRUE(z.isOk()) << z.status().toString();
  Zygote& zygote = **z;

  auto tight = holder(4);
  ASSERT_NE(tight, nullptr);
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  auto start = SteadyClock::now();
  auto failed =
      zygote.spawnInto(tight->pid(), pipeFds[1], pipeFds[1], {"PATH=/usr/bin:/bin"}, {"/dev/null"});
  auto took = SteadyClock::now() - start;
  ASSERT_FALSE(failed.isOk()) << "a runtime was forked past pids.max: pid " << *failed;
  EXPECT_NE(failed.status().code(), Code::kDeadlineExceeded) << failed.status().toString();
  EXPECT_NE(failed.status().message().find("fork the runtime in the sandbox"), std::string::npos)
      << failed.status().toString();
  EXPECT_LT(took, std::chrono::seconds(5));
  // No helper of the template is left waiting.
  auto deadline = SteadyClock::now() + std::chrono::seconds(5);
  while (!templateProcessesWithParent(zygote.pid()).empty() && SteadyClock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(templateProcessesWithParent(zygote.pid()).empty());

  // The same template still serves a sandbox with room.
  auto roomy = holder(64);
  ASSERT_NE(roomy, nullptr);
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  auto ok = zygote.spawnInto(roomy->pid(), out[1], out[1], {"PATH=/usr/bin:/bin"}, {"/dev/null"});
  ::close(out[1]);
  ::close(pipeFds[0]);
  ::close(pipeFds[1]);
  ASSERT_TRUE(ok.isOk()) << ok.status().toString();
  ::close(out[0]);
}

// The template holds none of the worker's fds but its control socket: an inherited fd without
// CLOEXEC (a client connection accepted by Asio has none) kept the connection open after the
// server closed it, and a keep-alive client's next request waited unanswered in the template.
TEST_F(ZygoteTest, TemplateInheritsNoFdOfTheWorker) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);  // no O_CLOEXEC: what an accepted connection looks like
  auto z = Zygote::startPython(STRATUS_PYTHON_ZYGOTE);
  ASSERT_TRUE(z.isOk()) << z.status().toString();
  ::close(p[1]);
  // With the write end only in our (now closed) hands, the read end sees EOF at once.
  pollfd pfd{p[0], POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 5'000), 1) << "the template holds the pipe's write end";
  char c;
  EXPECT_EQ(::read(p[0], &c, 1), 0);
  ::close(p[0]);
}

// The template dies with the thread that started it (a SIGKILLed server leaves none behind).
TEST_F(ZygoteTest, TemplateDiesWithItsOwner) {
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  pid_t owner = ::fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    ::close(report[0]);
    auto z = Zygote::startPython(STRATUS_PYTHON_ZYGOTE);
    if (!z.isOk()) ::_exit(2);
    pid_t pid = (*z)->pid();
    if (::write(report[1], &pid, sizeof pid) != sizeof pid) ::_exit(3);
    ::pause();  // killed by the test
    ::_exit(0);
  }
  ::close(report[1]);
  pid_t templ = 0;
  ASSERT_EQ(::read(report[0], &templ, sizeof templ), static_cast<ssize_t>(sizeof templ));
  ::close(report[0]);
  int pfd = static_cast<int>(::syscall(SYS_pidfd_open, templ, 0));
  ASSERT_GE(pfd, 0);
  ASSERT_EQ(::kill(owner, SIGKILL), 0);
  ASSERT_EQ(::waitpid(owner, nullptr, 0), owner);
  pollfd p{pfd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 10'000), 1) << "the template outlived its owner";
  ::close(pfd);
}

}  // namespace
}  // namespace stratus
