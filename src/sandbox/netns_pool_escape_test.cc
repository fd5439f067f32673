// The sandbox escape suite (escape_suite.h) on both ways a sandbox gets its network namespace:
// joined from the backend's pool of namespaces made ahead of time (setns, the default when the
// pool has one ready), and made by clone (CLONE_NEWNET, what an empty or disabled pool gives).
// The "fresh" path of hardening_test.cc gets whichever the pool allows at that moment; these two
// pin each one down, and fail if the backend did not take the path they name.
#include <thread>

#include "sandbox/escape_suite.h"

namespace stratus {
namespace {

using Clock = std::chrono::steady_clock;

const SandboxCreationPath kNetnsPooled{
    "netns_pooled",
    [](ProcessSandboxBackend& b, const SandboxSpec& s) -> Result<std::unique_ptr<Sandbox>> {
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

const SandboxCreationPath kNetnsCloned{
    "netns_cloned",
    [](ProcessSandboxBackend& b, const SandboxSpec& s) -> Result<std::unique_ptr<Sandbox>> {
      // Empty the pool (throwaway sandboxes take what it holds), create, refill again.
      b.setNetnsPoolRefill(false);
      for (int i = 0; b.netnsPoolStats().ready > 0; ++i) {
        SandboxSpec drain;
        drain.id = s.id + "-drain" + std::to_string(i);
        drain.argv = {"/usr/bin/true"};
        auto d = b.create(drain);
        if (!d.isOk()) return d.status();
      }
      const uint64_t fallbacks = b.netnsPoolStats().fallbacks;
      auto sb = b.create(s);
      b.setNetnsPoolRefill(true);
      if (sb.isOk() && b.netnsPoolStats().fallbacks != fallbacks + 1) {
        return internalError("create() did not make its network namespace with clone");
      }
      return sb;
    }};

INSTANTIATE_TEST_SUITE_P(Netns, SandboxEscapeTest,
                         ::testing::Combine(::testing::Values(kNetnsPooled, kNetnsCloned),
                                            ::testing::ValuesIn(sandboxEscapeAttempts())),
                         sandboxEscapeTestName);

}  // namespace
}  // namespace stratus
