// The sandbox escape suite (escape_suite.h) on sandboxes made the way the worker's warm pool makes
// them: created blank (empty /code, runtime already running) and given their code later with
// Sandbox::attachCode. The late mount is the only difference from a fresh sandbox, and every
// escape attempt must be contained exactly as there.
#include "sandbox/escape_suite.h"

namespace stratus {
namespace {

const SandboxCreationPath kPooled{
    "pooled",
    [](ProcessSandboxBackend& b, const SandboxSpec& s) -> Result<std::unique_ptr<Sandbox>> {
      SandboxSpec blank = s;
      blank.codeDir.clear();
      // The command starts before its code exists (as a pooled runtime does) and runs the probe
      // once /code has been attached.
      blank.argv = {"/bin/sh", "-c", "while [ ! -e /code/probe.py ]; do :; done; exec \"$@\"",
                    "sh"};
      blank.argv.insert(blank.argv.end(), s.argv.begin(), s.argv.end());
      auto sb = b.create(blank);
      if (!sb.isOk()) return sb.status();
      Status st = (*sb)->attachCode(s.codeDir);
      if (!st.isOk()) return st;
      return sb;
    }};

INSTANTIATE_TEST_SUITE_P(Pooled, SandboxEscapeTest,
                         ::testing::Combine(::testing::Values(kPooled),
                                            ::testing::ValuesIn(sandboxEscapeAttempts())),
                         sandboxEscapeTestName);

}  // namespace
}  // namespace stratus
