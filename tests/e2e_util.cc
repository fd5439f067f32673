#include "tests/e2e_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/base64.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/json.h"
#include "sandbox/process_sandbox.h"

namespace stratus::e2e {

std::string makeZip(const std::vector<ZipEntry>& entries) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  archive_write_open(
      a, &out, nullptr,
      [](archive*, void* ud, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(ud)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const auto& e : entries) {
    archive_entry* en = archive_entry_new();
    archive_entry_set_pathname(en, e.path.c_str());
    if (!e.symlinkTarget.empty()) {
      archive_entry_set_filetype(en, AE_IFLNK);
      archive_entry_set_symlink(en, e.symlinkTarget.c_str());
      archive_entry_set_perm(en, 0777);
      archive_entry_set_size(en, 0);
    } else {
      archive_entry_set_filetype(en, AE_IFREG);
      archive_entry_set_perm(en, e.mode);
      archive_entry_set_size(en, static_cast<la_int64_t>(e.content.size()));
    }
    archive_write_header(a, en);
    if (e.symlinkTarget.empty() && !e.content.empty()) {
      archive_write_data(a, e.content.data(), e.content.size());
    }
    archive_entry_free(en);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "stratus-e2e-XXXXXX").string();
  char* p = mkdtemp(tmpl.data());
  if (p == nullptr) std::abort();
  path_ = p;
}

TempDir::~TempDir() { (void)removeTree(path_); }

Result<std::unique_ptr<Server>> Server::start(const std::filesystem::path& dataDir,
                                              std::vector<std::string> extraArgs) {
  auto server = std::unique_ptr<Server>(new Server());
  server->dataDir_ = dataDir;
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return Status::fromErrno(errno, "pipe");
  std::vector<std::string> args = {STRATUS_BINARY, "up", "--listen", "127.0.0.1:0", "--data-dir",
                                   dataDir.string(), "--no-client-config", "--keep-alive", "600"};
  for (auto& a : extraArgs) args.push_back(a);
  pid_t pid = fork();
  if (pid < 0) return Status::fromErrno(errno, "fork");
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  server->pid_ = pid;
  // The first stdout line names the endpoint.
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (line.find('\n') == std::string::npos) {
    if (std::chrono::steady_clock::now() > deadline) {
      close(out[0]);
      return Status(Code::kDeadlineExceeded, "stratus up did not print its endpoint in 30 s");
    }
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    char buf[512];
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) {
      close(out[0]);
      return Status(Code::kUnavailable, "stratus up exited before listening; output: " + line);
    }
    line.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  size_t at = line.find("http://");
  if (at == std::string::npos) return internalError("unexpected first line: " + line);
  server->endpoint_ = line.substr(at, line.find('\n', at) - at);
  auto key = readFile(dataDir / "admin-key");
  if (!key.isOk()) return key.status();
  server->key_ = *key;
  while (!server->key_.empty() && isspace(static_cast<unsigned char>(server->key_.back()))) {
    server->key_.pop_back();
  }
  auto client = HttpClient::connect(server->endpoint_);
  if (!client.isOk()) return client.status();
  server->client_ = std::move(client).value();
  auto health = server->client_->request("GET", "/healthz");
  if (!health.isOk()) return health.status();
  if (health->status != 200) return internalError("healthz answered " + health->body);
  return server;
}

Server::~Server() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st;
    waitpid(pid_, &st, 0);
    // A killed server cannot remove its sandbox state on tmpfs (ProcessSandboxOptions::
    // forDataDir); the next start on the data dir would. None follows a test, so do it here.
    const std::filesystem::path shm =
        std::filesystem::path("/dev/shm") / ProcessSandboxOptions::nameForDataDir(dataDir_);
    std::error_code ec;
    std::filesystem::remove_all(shm, ec);
  }
}

Result<int> Server::stop(int sig, std::chrono::seconds timeout) {
  if (pid_ <= 0) return internalError("server not running");
  client_.reset();
  ::kill(pid_, sig);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return st;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Status(Code::kDeadlineExceeded, "server did not exit after signal");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<HttpResponse> Server::call(const std::string& method, const std::string& target,
                                  const std::string& body, HttpHeaders headers) {
  if (!headers.count("Authorization")) headers["Authorization"] = "Bearer " + key_;
  if (!body.empty() && !headers.count("Content-Type")) {
    headers["Content-Type"] = "application/json";
  }
  return client_->request(method, target, headers, body);
}

Result<HttpResponse> Server::createFunction(const std::string& specJson) {
  return call("POST", "/2023-03-30/functions", specJson);
}

Result<HttpResponse> Server::invoke(const std::string& name, const std::string& payload,
                                    HttpHeaders headers) {
  return call("POST", "/2023-03-30/functions/" + name + "/invocations", payload,
              std::move(headers));
}

std::string functionSpec(const std::string& name, const std::string& runtime,
                         const std::string& handler, const std::string& zip,
                         const std::string& extraFields) {
  json::object o;
  o["functionName"] = name;
  o["runtime"] = runtime;
  if (!handler.empty()) o["handler"] = handler;
  o["code"] = json::object{{"zipFile", base64Encode(zip)}};
  std::string s = json::serialize(o);
  if (!extraFields.empty()) {
    s.pop_back();
    s += "," + extraFields + "}";
  }
  return s;
}

std::pair<int, std::string> runCommand(const std::vector<std::string>& argv,
                                       const std::map<std::string, std::string>& env) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return {-1, "pipe failed"};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(out[1], STDERR_FILENO);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  std::string output;
  char buf[4096];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof buf)) > 0) output.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), output};
}

std::vector<pid_t> processesInCgroup(const std::string& needle) {
  std::vector<pid_t> pids;
  DIR* d = opendir("/proc");
  if (d == nullptr) return pids;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::ifstream f("/proc/" + std::string(e->d_name) + "/cgroup");
    std::stringstream ss;
    ss << f.rdbuf();
    if (ss.str().find(needle) != std::string::npos) pids.push_back(static_cast<pid_t>(pid));
  }
  closedir(d);
  return pids;
}

std::vector<std::string> mountsMentioning(const std::string& needle) {
  std::vector<std::string> lines;
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.find(needle) != std::string::npos) lines.push_back(line);
  }
  return lines;
}

}  // namespace stratus::e2e
