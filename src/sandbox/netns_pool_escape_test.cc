// The sandbox escape suite (escape_suite.h) on sandboxes that joined a network namespace made
// ahead of time by the backend's pool (ProcessSandboxOptions::netnsPool, setns instead of
// CLONE_NEWNET). The "fresh" path of hardening_test.cc covers CLONE_NEWNET (the pool is off by
// default); this one fails if the backend did not take the pooled path.
#include <stdlib.h>

#include <thread>

#include "sandbox/escape_suite.h"
#include "sandbox/sandbox_test_util.h"

namespace stratus {
namespace {

using Clock = std::chrono::steady_clock;

// One pooled backend for the whole binary (its sandboxes must not outlive it; it lives until
// exit, when its destructor joins the refill thread and removes its cgroup parent and state dir).
ProcessSandboxBackend& pooledBackend() {
  static std::unique_ptr<ProcessSandboxBackend> backend = [] {
    std::string dir = "/tmp/stratus-netns-escape-XXXXXX";
    EXPECT_NE(::mkdtemp(dir.data()), nullptr);
    ProcessSandboxOptions o;
    o.stateDir = dir;
    o.removeStateDirOnExit = true;
    o.cgroupParent = "stratus-test-" + sandbox_test::randomHex();
    o.netnsPool = 4;
    auto b = ProcessSandboxBackend::create(o);
    EXPECT_TRUE(b.isOk()) << b.status().toString();
    return b.isOk() ? std::move(b).value() : nullptr;
  }();
  return *backend;
}

const SandboxCreationPath kNetnsPooled{
    "netns_pooled",
    [](ProcessSandboxBackend&, const SandboxSpec& s) -> Result<std::unique_ptr<Sandbox>> {
      ProcessSandboxBackend& b = pooledBackend();
      auto deadline = Clock::now() + std::chrono::seconds(10);
      while (b.netnsPoolStats().ready == 0) {
        if (Clock::now() > deadline) return internalError("the netns pool stayed empty");
        std::this_thread::yield();
      }
      const uint64_t taken = b.netnsPoolStats().taken;
      auto sb = b.create(s);
      if (sb.isOk() && b.netnsPoolStats().taken != taken + 1) {
        return internalError("create() did not join a pooled network namespace");
      }
      return sb;
    }};

INSTANTIATE_TEST_SUITE_P(Netns, SandboxEscapeTest,
                         ::testing::Combine(::testing::Values(kNetnsPooled),
                                            ::testing::ValuesIn(sandboxEscapeAttempts())),
                         sandboxEscapeTestName);

}  // namespace
}  // namespace stratus
