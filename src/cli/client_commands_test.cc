// The client side that needs no server: config resolution and the deploy package/body.
#include "cli/client_commands.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>

#include "codepack/zip_import.h"
#include "common/base64.h"
#include "common/fs.h"
#include "common/ids.h"

namespace stratus {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "cli-test-XXXXXX").string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() { (void)removeTree(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Sets (or unsets, for nullptr) an environment variable for one test and restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = old;
    value ? ::setenv(name, value, 1) : ::unsetenv(name);
  }
  ~ScopedEnv() { old_ ? ::setenv(name_, old_->c_str(), 1) : ::unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

mode_t permOf(const fs::path& p) {
  struct stat st;
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

TEST(ClientConfig, PrecedenceIsFlagsThenEnvThenFile) {
  TempDir t;
  ScopedEnv cfg("STRATUS_CONFIG", (t.path() / "a/b/config.json").c_str());
  ScopedEnv ep("STRATUS_ENDPOINT", nullptr);
  ScopedEnv key("STRATUS_KEY", nullptr);

  // Nothing anywhere: the default endpoint, no key.
  auto none = resolveClientConfig("", "");
  ASSERT_TRUE(none.isOk()) << none.status().toString();
  EXPECT_EQ(none->endpoint, "http://127.0.0.1:9000");
  EXPECT_EQ(none->key, "");

  ASSERT_TRUE(writeClientConfig({"http://file:1", "file-key"}).isOk());
  EXPECT_EQ(permOf(t.path() / "a/b/config.json"), 0600u);
  EXPECT_EQ(permOf(t.path() / "a/b"), 0700u);
  EXPECT_EQ(permOf(t.path() / "a"), 0700u);
  auto file = resolveClientConfig("", "");
  ASSERT_TRUE(file.isOk());
  EXPECT_EQ(file->endpoint, "http://file:1");
  EXPECT_EQ(file->key, "file-key");

  {
    ScopedEnv ep2("STRATUS_ENDPOINT", "http://env:2");
    auto env = resolveClientConfig("", "");
    ASSERT_TRUE(env.isOk());
    EXPECT_EQ(env->endpoint, "http://env:2");
    EXPECT_EQ(env->key, "file-key");  // fields resolve independently
    ScopedEnv key2("STRATUS_KEY", "env-key");
    auto flags = resolveClientConfig("http://flag:3", "");
    ASSERT_TRUE(flags.isOk());
    EXPECT_EQ(flags->endpoint, "http://flag:3");
    EXPECT_EQ(flags->key, "env-key");
    auto both = resolveClientConfig("http://flag:3", "flag-key");
    ASSERT_TRUE(both.isOk());
    EXPECT_EQ(both->key, "flag-key");
  }

  // Rewriting replaces the file (as `stratus up` does on every start).
  ASSERT_TRUE(writeClientConfig({"http://new:4", "new-key"}).isOk());
  auto again = resolveClientConfig("", "");
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(again->endpoint, "http://new:4");
  EXPECT_EQ(again->key, "new-key");
}

TEST(ClientConfig, DefaultPathIsUnderHome) {
  TempDir t;
  ScopedEnv cfg("STRATUS_CONFIG", nullptr);
  ScopedEnv home("HOME", t.path().c_str());
  EXPECT_EQ(clientConfigPath(), t.path() / ".config/stratus/config.json");
  ASSERT_TRUE(writeClientConfig({"http://h:1", "k"}).isOk());
  EXPECT_TRUE(fs::exists(t.path() / ".config/stratus/config.json"));
  EXPECT_EQ(permOf(t.path() / ".config/stratus"), 0700u);
}

TEST(ClientConfig, CorruptFileIsAnError) {
  TempDir t;
  ScopedEnv cfg("STRATUS_CONFIG", (t.path() / "config.json").c_str());
  ScopedEnv ep("STRATUS_ENDPOINT", nullptr);
  ScopedEnv key("STRATUS_KEY", nullptr);
  ASSERT_TRUE(writeFileAtomic(t.path() / "config.json", "{not json").isOk());
  auto r = resolveClientConfig("", "");
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("config.json"), std::string::npos);
  // Flags for both fields never need the file.
  EXPECT_TRUE(resolveClientConfig("http://x:1", "k").isOk());
}

TEST(Deploy, DirectoryPackageRoundTripsThroughImport) {
  TempDir t;
  fs::path fn = t.path() / "fn";
  ASSERT_TRUE(makeDirs(fn / "lib").isOk());
  ASSERT_TRUE(writeFileAtomic(fn / "index.py", "def handler(e, c): return e\n").isOk());
  ASSERT_TRUE(writeFileAtomic(fn / "bootstrap", "#!/usr/bin/python3\n", 0755).isOk());
  ASSERT_TRUE(writeFileAtomic(fn / "lib/util.py", "X = 1\n").isOk());

  auto zip = loadCodePackage(fn);
  ASSERT_TRUE(zip.isOk()) << zip.status().toString();
  auto imported = importZip(*zip, t.path() / "out");
  ASSERT_TRUE(imported.isOk()) << imported.status().toString();
  EXPECT_EQ(imported->files, 3);
  EXPECT_EQ(*readFile(t.path() / "out/index.py"), "def handler(e, c): return e\n");
  EXPECT_EQ(*readFile(t.path() / "out/lib/util.py"), "X = 1\n");
  EXPECT_EQ(permOf(t.path() / "out/bootstrap"), 0755u);

  // A .zip file is uploaded byte for byte; anything else is refused.
  ASSERT_TRUE(writeFileAtomic(t.path() / "fn.zip", *zip).isOk());
  auto asFile = loadCodePackage(t.path() / "fn.zip");
  ASSERT_TRUE(asFile.isOk());
  EXPECT_EQ(sha256Hex(*asFile), sha256Hex(*zip));
  EXPECT_FALSE(loadCodePackage(fn / "index.py").isOk());
  EXPECT_FALSE(loadCodePackage(t.path() / "missing").isOk());
}

TEST(Deploy, RequestBodies) {
  DeployOptions d;
  d.name = "hello";
  d.runtime = "python3";
  d.memoryMb = 256;
  d.env = std::map<std::string, std::string>{{"A", "1"}, {"B", "x=y"}};
  json::object create = deployRequestBody(d, "zipbytes", true);
  EXPECT_EQ(create.at("functionName").as_string(), "hello");
  EXPECT_EQ(create.at("runtime").as_string(), "python3");
  EXPECT_EQ(create.at("handler").as_string(), "index.handler");
  EXPECT_EQ(create.at("memorySize").as_int64(), 256);
  EXPECT_FALSE(create.contains("timeout"));
  EXPECT_EQ(create.at("environmentVariables").at("B").as_string(), "x=y");
  EXPECT_EQ(*base64Decode(create.at("code").at("zipFile").as_string()), "zipbytes");

  // An update leaves what was not asked for to the function's current configuration.
  json::object update = deployRequestBody(d, "zipbytes", false);
  EXPECT_FALSE(update.contains("handler"));
  EXPECT_FALSE(update.contains("description"));
  EXPECT_EQ(update.at("memorySize").as_int64(), 256);

  d.runtime = "custom";
  EXPECT_FALSE(deployRequestBody(d, "z", true).contains("handler"));
}

TEST(Deploy, EnvAssignments) {
  auto ok = parseEnvAssignments({"A=1", "B=", "C=a=b"});
  ASSERT_TRUE(ok.isOk());
  EXPECT_EQ(ok->at("A"), "1");
  EXPECT_EQ(ok->at("B"), "");
  EXPECT_EQ(ok->at("C"), "a=b");
  EXPECT_FALSE(parseEnvAssignments({"NOEQUALS"}).isOk());
  EXPECT_FALSE(parseEnvAssignments({"=v"}).isOk());
}

}  // namespace
}  // namespace stratus
