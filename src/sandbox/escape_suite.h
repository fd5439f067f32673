// The sandbox-level escape suite (hardening_test.cc), parameterised over how a sandbox comes to
// be, so that every creation path -- a fresh create(), a fork of a zygote template, a pool hit
// -- is held to the same isolation. To run the suite against another path, link a .cc into
// hardening_test that instantiates it:
//
//   SandboxCreationPath zygote{"zygote", [](ProcessSandboxBackend& b, const SandboxSpec& s) {
//     return ...;  // a running sandbox for s, made the new way
//   }};
//   INSTANTIATE_TEST_SUITE_P(Zygote, SandboxEscapeTest,
//                            ::testing::Combine(::testing::Values(zygote),
//                                               ::testing::ValuesIn(sandboxEscapeAttempts())),
//                            sandboxEscapeTestName);
//
// Each attempt runs tests/escape/probe.py (the same probe the server-level suite,
// tests/escape_test.cc, deploys as a function) as the sandbox's command.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "sandbox/process_sandbox.h"

namespace stratus {

struct SandboxCreationPath {
  std::string name;
  std::function<Result<std::unique_ptr<Sandbox>>(ProcessSandboxBackend&, const SandboxSpec&)>
      create;
};
inline void PrintTo(const SandboxCreationPath& p, std::ostream* os) { *os << p.name; }

// Probe attempt names (tests/escape/probe.py) that need nothing but a sandbox.
std::vector<std::string> sandboxEscapeAttempts();

using SandboxEscapeParam = std::tuple<SandboxCreationPath, std::string>;
std::string sandboxEscapeTestName(const ::testing::TestParamInfo<SandboxEscapeParam>& info);

class SandboxEscapeTest : public ::testing::TestWithParam<SandboxEscapeParam> {
 protected:
  void SetUp() override;
  void TearDown() override;
  std::filesystem::path tmp_, code_;
  std::string parent_;
  std::unique_ptr<ProcessSandboxBackend> backend_;
};

}  // namespace stratus
