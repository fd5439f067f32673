#include "sandbox/zygote.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <sstream>

#include "common/fs.h"
#include "common/json.h"

extern char** environ;

namespace stratus {
namespace {

constexpr int kReplyTimeoutMs = 10'000;

// The command line of the sandbox's init (init_main.cc): init ERROR_FD SYNC_FD STDOUT_FD
// STDERR_FD UID GID CWD FLAGS NOFILE FILTER N PATH_1..PATH_N ARGV...
struct InitArgs {
  std::string uid, gid, cwd, nofile, filterHex;
};

Result<InitArgs> readInitArgs(pid_t pid) {
  ASSIGN_OR_RETURN(std::string raw, readFile("/proc/" + std::to_string(pid) + "/cmdline"));
  std::vector<std::string> a;
  size_t start = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\0') {
      a.push_back(raw.substr(start, i - start));
      start = i + 1;
    }
  }
  if (a.size() < 13 || a[0] != "stratus-sandbox-init") {
    return Status(Code::kFailedPrecondition,
                  "process " + std::to_string(pid) + " is not a sandbox init");
  }
  InitArgs r;
  r.uid = a[5];
  r.gid = a[6];
  r.cwd = a[7];
  r.nofile = a[9];
  r.filterHex = a[10] == "-" ? "" : a[10];
  return r;
}

// Cgroup files whose write of "0" moves the writer into the cgroups of pid (those where it is
// not already).
std::vector<std::string> cgroupFilesOf(pid_t pid) {
  auto parse = [](const std::string& text) {
    std::map<std::string, std::string> out;  // "hierarchy id:controllers" -> path
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      size_t a = line.find(':'), b = line.find(':', a + 1);
      if (a == std::string::npos || b == std::string::npos) continue;
      out[line.substr(0, b)] = line.substr(b + 1);
    }
    return out;
  };
  auto theirs = readFile("/proc/" + std::to_string(pid) + "/cgroup");
  auto ours = readFile("/proc/self/cgroup");
  if (!theirs.isOk() || !ours.isOk()) return {};
  auto mine = parse(*ours);
  std::vector<std::string> files;
  for (const auto& [key, path] : parse(*theirs)) {
    if (mine[key] == path) continue;
    std::string ctrls = key.substr(key.find(':') + 1);
    if (ctrls.empty()) {  // v2
      std::string root = std::filesystem::exists("/sys/fs/cgroup/cgroup.controllers")
                             ? "/sys/fs/cgroup"
                             : "/sys/fs/cgroup/unified";
      files.push_back(root + path + "/cgroup.procs");
      continue;
    }
    if (ctrls.starts_with("name=")) ctrls = ctrls.substr(5);
    std::string dir = "/sys/fs/cgroup/" + ctrls;
    if (!std::filesystem::exists(dir)) dir = "/sys/fs/cgroup/" + ctrls.substr(0, ctrls.find(','));
    files.push_back(dir + path + "/tasks");
  }
  return files;
}

}  // namespace

Result<std::unique_ptr<Zygote>> Zygote::start(const std::vector<std::string>& argv,
                                              const std::vector<std::string>& env,
                                              const std::string& what) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return Status::fromErrno(errno, "socketpair for the " + what);
  }
  UniqueFd ours(sv[0]), theirs(sv[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  // Not the server's stderr either: a template child that outlived the server would otherwise
  // hold the pipe of whoever reads the server's output (seen: a test harness waiting on EOF).
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, theirs.get(), 3);
  // Nothing else of the worker's: an fd without CLOEXEC (Asio's accepted client connections have
  // none) would otherwise live on in the template, so that closing it in the server no longer
  // closes the connection -- a keep-alive client the server dropped for idleness then waited for
  // ever for an answer to a request parked in the template's copy of the socket.
  posix_spawn_file_actions_addclosefrom_np(&actions, 4);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, cargv[0], &actions, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Status::fromErrno(rc, "start the " + what);
  return std::unique_ptr<Zygote>(new Zygote(pid, std::move(ours)));
}

Result<std::unique_ptr<Zygote>> Zygote::startPython(const std::filesystem::path& script) {
  return start({"/usr/bin/python3", "-u", "-S", script.string()},
               {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"},
               "python3 template");
}

Result<std::unique_ptr<Zygote>> Zygote::startNode(const std::filesystem::path& script,
                                                  const std::vector<std::string>& nodeFlags) {
  std::vector<std::string> argv = {"/usr/bin/node", "--single-threaded"};
  argv.insert(argv.end(), nodeFlags.begin(), nodeFlags.end());
  argv.push_back(script.string());
  return start(argv, {"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}, "nodejs template");
}

Zygote::~Zygote() {
  control_.reset();
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

Result<pid_t> Zygote::spawnInto(pid_t initPid, int stdoutFd, int stderrFd,
                                const std::vector<std::string>& env,
                                const std::vector<std::string>& argv) {
  const std::string ctx =
      "fork a runtime from the template into sandbox init " + std::to_string(initPid);
  ASSIGN_OR_RETURN(InitArgs init, readInitArgs(initPid));
  std::vector<UniqueFd> nsFds;
  json::array nsTypes;
  for (const char* t : {"user", "mnt", "pid", "net", "uts", "ipc", "cgroup"}) {
    const std::string theirs = "/proc/" + std::to_string(initPid) + "/ns/" + t;
    struct stat a {
    }, b{};
    if (::stat(theirs.c_str(), &a) != 0) return Status::fromErrno(errno, ctx + ": " + theirs);
    if (::stat((std::string("/proc/self/ns/") + t).c_str(), &b) == 0 && a.st_ino == b.st_ino &&
        a.st_dev == b.st_dev) {
      continue;  // not a namespace of its own (e.g. no user namespace in the plain profile)
    }
    UniqueFd fd(::open(theirs.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Status::fromErrno(errno, ctx + ": open " + theirs);
    nsFds.push_back(std::move(fd));
    nsTypes.push_back(json::string(t));
  }
  json::object req;
  req["nsTypes"] = std::move(nsTypes);
  json::array files;
  for (auto& f : cgroupFilesOf(initPid)) files.push_back(json::string(f));
  req["cgroupFiles"] = std::move(files);
  req["uid"] = init.uid;
  req["gid"] = init.gid;
  req["nofile"] = init.nofile;
  req["filterHex"] = init.filterHex;
  req["cwd"] = init.cwd;
  json::array e, a;
  for (const auto& kv : env) e.push_back(json::string(kv));
  for (const auto& s : argv) a.push_back(json::string(s));
  req["env"] = std::move(e);
  if (!argv.empty()) req["argv"] = std::move(a);
  const std::string body = json::serialize(req);

  std::vector<int> fds = {stdoutFd, stderrFd};
  for (auto& f : nsFds) fds.push_back(f.get());
  std::vector<char> cbuf(CMSG_SPACE(sizeof(int) * fds.size()));
  iovec iov{const_cast<char*>(body.data()), body.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf.data();
  msg.msg_controllen = cbuf.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());

  std::lock_guard<std::mutex> lock(mu_);
  if (::sendmsg(control_.get(), &msg, MSG_NOSIGNAL) < 0) {
    return Status::fromErrno(errno, ctx + ": send to the template");
  }
  pollfd p{control_.get(), POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, kReplyTimeoutMs);
  } while (rc < 0 && errno == EINTR);
  if (rc <= 0) {
    // Its state is unknown and a late answer would be taken for the next request's: end it, so
    // that the caller starts a new one (kUnavailable, as for a template that is gone).
    ::kill(pid_, SIGKILL);
    return Status(Code::kUnavailable, ctx + ": the template did not answer");
  }
  char buf[4096];
  ssize_t n = ::recv(control_.get(), buf, sizeof buf, 0);
  if (n <= 0) return Status(Code::kUnavailable, ctx + ": the template is gone");
  auto reply = parseJson(std::string_view(buf, static_cast<size_t>(n)));
  if (!reply.isOk() || !reply->is_object()) return internalError(ctx + ": bad answer");
  const auto& o = reply->as_object();
  if (auto* pid = o.if_contains("pid"); pid && pid->is_int64()) {
    return static_cast<pid_t>(pid->as_int64());
  }
  std::string err = "unknown error";
  if (auto* m = o.if_contains("error"); m && m->is_string()) err = std::string(m->as_string());
  return Status(Code::kInternal, ctx + ": " + err);
}

}  // namespace stratus
