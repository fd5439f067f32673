#include "runtime/runtime.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>

#include "common/fs.h"

namespace stratus::runtime {
namespace {

std::string envValue(const std::vector<std::string>& env, const std::string& key) {
  std::string value = "<unset>";
  int seen = 0;
  for (const auto& kv : env) {
    if (kv.rfind(key + "=", 0) == 0) {
      value = kv.substr(key.size() + 1);
      ++seen;
    }
  }
  EXPECT_LE(seen, 1) << key << " appears more than once";
  return value;
}

FunctionSpec spec(std::string runtime) {
  FunctionSpec fn;
  fn.name = "hello";
  fn.runtime = std::move(runtime);
  fn.handler = "index.handler";
  fn.memoryMb = 256;
  return fn;
}

TEST(RuntimeTest, KnownRuntimes) {
  EXPECT_TRUE(isKnownRuntime("python3"));
  EXPECT_TRUE(isKnownRuntime("nodejs"));
  EXPECT_TRUE(isKnownRuntime("custom"));
  EXPECT_FALSE(isKnownRuntime("provided"));  // not served by this version
  EXPECT_FALSE(isKnownRuntime("python2"));
  EXPECT_FALSE(isKnownRuntime(""));
  EXPECT_EQ(knownRuntimesList(), "python3, nodejs, custom");
  EXPECT_EQ(kindOf("python3"), Kind::kFrameProtocol);
  EXPECT_EQ(kindOf("nodejs"), Kind::kFrameProtocol);
  EXPECT_EQ(kindOf("custom"), Kind::kCustomHttp);
}

TEST(RuntimeTest, CommandsPointIntoTheAssetsMount) {
  auto py = commandFor(spec("python3"));
  ASSERT_FALSE(py.empty());
  EXPECT_EQ(py.front(), "/usr/bin/python3");
  EXPECT_NE(std::find(py.begin(), py.end(), "-u"), py.end());
  EXPECT_EQ(py.back(), std::string(kAssetsMountPoint) + "/python3/bootstrap.py");

  auto node = commandFor(spec("nodejs"));
  EXPECT_EQ(node.front(), "/usr/bin/node");
  EXPECT_EQ(node.back(), std::string(kAssetsMountPoint) + "/nodejs/bootstrap.js");
  EXPECT_NE(std::find(node.begin(), node.end(), "--max-old-space-size=217"), node.end());

  FunctionSpec custom = spec("custom");
  EXPECT_EQ(commandFor(custom), std::vector<std::string>{"/code/bootstrap"});
  custom.customRuntimeConfig.command = {"python3", "server.py"};
  custom.customRuntimeConfig.args = {"--port", "9000"};
  EXPECT_EQ(commandFor(custom),
            (std::vector<std::string>{"python3", "server.py", "--port", "9000"}));
  custom.customRuntimeConfig.command.clear();
  EXPECT_EQ(commandFor(custom), (std::vector<std::string>{"/code/bootstrap", "--port", "9000"}));
}

TEST(RuntimeTest, EnvironmentForFrameProtocolRuntime) {
  FunctionSpec fn = spec("python3");
  fn.environmentVariables = {{"MY_VAR", "x=y"},
                             {"PATH", "/opt/bin:/usr/bin"},
                             {"FC_FUNCTION_NAME", "spoofed"},
                             {"bad=name", "v"}};
  auto env = environmentFor(fn);
  EXPECT_EQ(envValue(env, "MY_VAR"), "x=y");
  EXPECT_EQ(envValue(env, "PATH"), "/opt/bin:/usr/bin");  // defaults are the user's to change
  EXPECT_EQ(envValue(env, "FC_FUNCTION_NAME"), "hello");  // reserved names are not
  EXPECT_EQ(envValue(env, "HOME"), "/tmp");
  EXPECT_EQ(envValue(env, "LANG"), "C.UTF-8");
  EXPECT_EQ(envValue(env, "TMPDIR"), "/tmp");
  EXPECT_EQ(envValue(env, "FC_FUNCTION_HANDLER"), "index.handler");
  EXPECT_EQ(envValue(env, "FC_FUNCTION_MEMORY_SIZE"), "256");
  EXPECT_EQ(envValue(env, "FC_RUNTIME"), "python3");
  EXPECT_EQ(envValue(env, "AWS_LAMBDA_FUNCTION_NAME"), "hello");
  EXPECT_EQ(envValue(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), "256");
  EXPECT_EQ(envValue(env, "AWS_LAMBDA_FUNCTION_VERSION"), "$LATEST");
  EXPECT_EQ(envValue(env, "_HANDLER"), "index.handler");
  EXPECT_EQ(envValue(env, "LAMBDA_TASK_ROOT"), "/code");
  EXPECT_EQ(envValue(env, "PYTHONDONTWRITEBYTECODE"), "1");
  EXPECT_EQ(envValue(env, "PYTHONUNBUFFERED"), "1");
  EXPECT_EQ(envValue(env, "STRATUS_RUNTIME_SOCKET"), std::string(kSocketPathInSandbox));
  EXPECT_EQ(envValue(env, "FC_CUSTOM_LISTEN_PORT"), "<unset>");
  for (const auto& kv : env) EXPECT_NE(kv.rfind("bad=name", 0), 0u);
}

TEST(RuntimeTest, EnvironmentForCustomRuntime) {
  FunctionSpec fn = spec("custom");
  fn.customRuntimeConfig.port = 8080;
  auto env = environmentFor(fn);
  EXPECT_EQ(envValue(env, "FC_CUSTOM_LISTEN_PORT"), "8080");
  EXPECT_EQ(envValue(env, "FC_SERVER_PORT"), "8080");
  EXPECT_EQ(envValue(env, "STRATUS_RUNTIME_SOCKET"), "<unset>");
  EXPECT_EQ(envValue(env, "FC_RUNTIME"), "custom");
}

TEST(RuntimeTest, InstallAssetsWritesTheBootstrapsVerbatim) {
  char tmpl[] = "/tmp/stratus-rt-assets-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::filesystem::path dir = std::filesystem::path(tmpl) / "assets";
  ASSERT_TRUE(installAssets(dir).isOk());
  // Twice: replacing older copies works.
  auto st = installAssets(dir);
  ASSERT_TRUE(st.isOk()) << st.toString();
  for (const char* name :
       {"python3/bootstrap.py", "python3/stratus_runtime.py", "nodejs/bootstrap.js"}) {
    auto installed = readFile(dir / name);
    ASSERT_TRUE(installed.isOk()) << name;
    auto source = readFile(std::filesystem::path(STRATUS_RUNTIME_SOURCE_DIR) / name);
    ASSERT_TRUE(source.isOk()) << name;
    EXPECT_TRUE(*installed == *source) << name << " differs from its embedded copy (rebuild?)";
    struct stat sb {};
    ASSERT_EQ(::stat((dir / name).c_str(), &sb), 0);
    EXPECT_EQ(sb.st_mode & 07777, 0644u) << name;
    ASSERT_EQ(::stat((dir / name).parent_path().c_str(), &sb), 0);
    EXPECT_EQ(sb.st_mode & 07777, 0755u) << name;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "python3/bootstrap.py.tmp"));
  // The python runtime is precompiled for the interpreter the sandboxes run.
  if (std::filesystem::exists("/usr/bin/python3")) {
    auto pyc = readFile(dir / "python3/stratus_runtime.pyc");
    ASSERT_TRUE(pyc.isOk()) << pyc.status().toString();
    EXPECT_GT(pyc->size(), 1000u);
    EXPECT_EQ(pyc->substr(2, 2), "\r\n");  // every CPython bytecode magic ends in \r\n
  }
  ASSERT_TRUE(removeTree(tmpl).isOk());
}

}  // namespace
}  // namespace stratus::runtime
