#include "cluster/testing.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "common/fs.h"
#include "common/unique_fd.h"
#include "http/http_client.h"

namespace stratus::testing {

Result<uint16_t> freePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::fromErrno(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::fromErrno(errno, "bind 127.0.0.1:0");
  }
  socklen_t len = sizeof addr;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Status::fromErrno(errno, "getsockname");
  }
  return ntohs(addr.sin_port);
}

bool waitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(std::vector<std::string> argv,
                                                          const std::filesystem::path& logFile) {
  UniqueFd log(::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log) return Status::fromErrno(errno, "open " + logFile.string());
  pid_t pid = ::fork();
  if (pid < 0) return Status::fromErrno(errno, "fork");
  if (pid == 0) {
    ::dup2(log.get(), STDOUT_FILENO);
    ::dup2(log.get(), STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    // Its own process group, so that a test's ^C does not reach it twice.
    ::setpgid(0, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    _exit(127);
  }
  auto p = std::unique_ptr<ChildProcess>(new ChildProcess());
  p->pid_ = pid;
  p->logFile_ = logFile;
  return p;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) stop(SIGKILL);
}

bool ChildProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int ChildProcess::stop(int sig, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return 0;
  ::kill(pid_, sig);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return status;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string ChildProcess::log() const {
  auto text = readFile(logFile_);
  return text ? *text : std::string();
}

Result<std::unique_ptr<EtcdServer>> EtcdServer::start(const std::filesystem::path& dir) {
  auto s = std::unique_ptr<EtcdServer>(new EtcdServer());
  s->dir_ = dir;
  RETURN_IF_ERROR(makeDirs(dir, 0700));
  // Ports are picked before etcd binds them; another process may take one in between, so retry.
  Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    ASSIGN_OR_RETURN(s->clientPort_, freePort());
    ASSIGN_OR_RETURN(s->peerPort_, freePort());
    if (s->clientPort_ == s->peerPort_) continue;
    s->url_ = "http://127.0.0.1:" + std::to_string(s->clientPort_);
    last = s->launch();
    if (last) return s;
  }
  return last;
}

Status EtcdServer::launch() {
  std::string peer = "http://127.0.0.1:" + std::to_string(peerPort_);
  std::vector<std::string> argv = {"/usr/bin/etcd",
                                   "--name",
                                   "default",
                                   "--data-dir",
                                   (dir_ / "data").string(),
                                   "--listen-client-urls",
                                   url_,
                                   "--advertise-client-urls",
                                   url_,
                                   "--listen-peer-urls",
                                   peer,
                                   "--initial-advertise-peer-urls",
                                   peer,
                                   "--initial-cluster",
                                   "default=" + peer,
                                   "--max-request-bytes",
                                   std::to_string(8 << 20)};
  ASSIGN_OR_RETURN(proc_, ChildProcess::spawn(argv, dir_ / "etcd.log"));
  bool up = waitFor(
      [&] {
        if (!proc_->running()) return true;
        auto r = httpRequest(url_, "POST", "/v3/kv/range", {}, R"({"key":"AA=="})",
                             std::chrono::milliseconds(500));
        return r.isOk() && r->status == 200;
      },
      std::chrono::seconds(20));
  if (!up || !proc_->running()) {
    std::string log = proc_->log();
    proc_.reset();
    return unavailable("etcd did not start on " + url_ + ": " +
                       log.substr(log.size() > 2000 ? log.size() - 2000 : 0));
  }
  return Status::ok();
}

void EtcdServer::kill() {
  if (proc_) proc_->stop(SIGKILL);
  proc_.reset();
}

Status EtcdServer::restart() {
  kill();
  return launch();
}

EtcdServer::~EtcdServer() { kill(); }

}  // namespace stratus::testing
