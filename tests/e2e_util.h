// Helpers for end-to-end tests: a real `stratus up` child process on a free port with a fresh
// data dir, zips built in memory, and a JSON-over-HTTP client for the API.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "http/http_client.h"

namespace stratus::e2e {

struct ZipEntry {
  std::string path;
  std::string content;
  int mode = 0644;
  std::string symlinkTarget;  // non-empty: a symlink entry
};
std::string makeZip(const std::vector<ZipEntry>& entries);

// A fresh temporary directory, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class Server {
 public:
  // Starts STRATUS_BINARY up --listen 127.0.0.1:0 --data-dir dataDir and waits until it answers
  // /healthz.
  static Result<std::unique_ptr<Server>> start(const std::filesystem::path& dataDir,
                                                std::vector<std::string> extraArgs = {});
  ~Server();  // SIGKILL if still running

  const std::string& endpoint() const { return endpoint_; }
  const std::string& key() const { return key_; }
  pid_t pid() const { return pid_; }
  const std::filesystem::path& dataDir() const { return dataDir_; }
  // Sends sig and waits (bounded) for exit; returns the wait status.
  Result<int> stop(int sig, std::chrono::seconds timeout = std::chrono::seconds(30));

  // Authenticated request with the admin key.
  Result<HttpResponse> call(const std::string& method, const std::string& target,
                            const std::string& body = {}, HttpHeaders headers = {});
  // POST /2023-03-30/functions with a spec and a zip.
  Result<HttpResponse> createFunction(const std::string& specJson);
  Result<HttpResponse> invoke(const std::string& name, const std::string& payload = "{}",
                              HttpHeaders headers = {});

 private:
  pid_t pid_ = -1;
  std::string endpoint_;
  std::string key_;
  std::filesystem::path dataDir_;
  std::unique_ptr<HttpClient> client_;
};

// Builds a create-function JSON body.
std::string functionSpec(const std::string& name, const std::string& runtime,
                         const std::string& handler, const std::string& zip,
                         const std::string& extraFields = {});

// Runs a command, returns {exit status, stdout+stderr}.
std::pair<int, std::string> runCommand(const std::vector<std::string>& argv,
                                       const std::map<std::string, std::string>& env = {});

// Pids of live processes whose cgroup path (any hierarchy) contains `needle`.
std::vector<pid_t> processesInCgroup(const std::string& needle);
// Lines of /proc/self/mountinfo that mention `needle`.
std::vector<std::string> mountsMentioning(const std::string& needle);

}  // namespace stratus::e2e
