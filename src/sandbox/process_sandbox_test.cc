// ProcessSandboxBackend, for real: namespaces, mounts, cgroup limits, OOM, pids, networking,
// teardown. Runs as root; each test uses its own state directory and cgroup parent so test
// binaries can run in parallel.
#include "sandbox/process_sandbox.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>

namespace stratus {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string randomHex() {
  std::random_device rd;
  std::ostringstream o;
  o << std::hex << rd() << rd();
  return o.str();
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void put(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::trunc);
  out << s;
}

// Reads from fd until EOF or the deadline; the sandboxed command holds the write end.
std::string readUntilEof(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  std::string out;
  auto deadline = Clock::now() + timeout;
  for (;;) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, left) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Reads one line (up to '\n') from fd within the deadline.
std::string readLine(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  std::string out;
  auto deadline = Clock::now() + timeout;
  while (out.find('\n') == std::string::npos) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, left) <= 0) continue;
    char c;
    if (::read(fd, &c, 1) != 1) break;
    out += c;
  }
  return out;
}

// Waits (on the pidfd, no sleeping) for the sandbox's init to exit and returns its exit info.
std::optional<ExitInfo> waitExit(Sandbox& s,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto r = s.pollExit();
    if (!r.isOk()) return std::nullopt;
    if (r->has_value()) return **r;
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) return std::nullopt;
    pollfd p{s.pidFd(), POLLIN, 0};
    ::poll(&p, 1, left);
  }
}

struct Pipe {
  Pipe() {
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    r.reset(p[0]);
    w.reset(p[1]);
  }
  UniqueFd r, w;
};

class ProcessSandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "stratus-sbx-XXXXXX").string();
    tmp_ = ::mkdtemp(t.data());
    ASSERT_FALSE(tmp_.empty());
    ::chmod(tmp_.c_str(), 0755);
    parent_ = "stratus-test-" + randomHex();
    ProcessSandboxOptions o;
    o.stateDir = tmp_ / "state";
    o.cgroupParent = parent_;
    auto b = ProcessSandboxBackend::create(o);
    ASSERT_TRUE(b.isOk()) << b.status().toString();
    backend_ = std::move(b).value();
    code_ = tmp_ / "code";
    fs::create_directory(code_);
    ::chmod(code_.c_str(), 0755);
  }
  void TearDown() override {
    if (backend_) {
      EXPECT_TRUE(backend_->sweepLeftovers().isOk());
      for (const char* c : {"memory", "pids", "cpu", "cpuacct"}) {
        EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup") / c / parent_)) << c;
      }
    }
    backend_.reset();
    if (!tmp_.empty()) fs::remove_all(tmp_);
  }

  void writeCode(const std::string& name, const std::string& content) {
    put(code_ / name, content);
    ::chmod((code_ / name).c_str(), 0644);
  }

  SandboxSpec spec(const std::string& id, std::vector<std::string> argv) {
    SandboxSpec s;
    s.id = id;
    s.argv = std::move(argv);
    s.codeDir = code_;
    return s;
  }

  // Runs a command to completion; returns its stdout and exit info.
  std::pair<std::string, std::optional<ExitInfo>> run(SandboxSpec s) {
    Pipe out;
    s.stdoutFd = out.w.get();
    if (s.stderrFd < 0) s.stderrFd = 2;
    auto sb = backend_->create(s);
    EXPECT_TRUE(sb.isOk()) << sb.status().toString();
    if (!sb.isOk()) return {};
    out.w.reset();
    std::string text = readUntilEof(out.r.get());
    auto info = waitExit(**sb);
    return {text, info};
  }

  fs::path tmp_, code_;
  std::string parent_;
  std::unique_ptr<ProcessSandboxBackend> backend_;
};

constexpr const char* kProbe = R"PY(
import errno, json, os, socket
r = {}
r['pid'] = os.getpid()
r['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
def writable(path):
    try:
        fn = os.path.join(path, '.probe')
        with open(fn, 'w') as f:
            f.write('x')
        os.unlink(fn)
        return 'yes'
    except OSError as e:
        return errno.errorcode[e.errno]
for d in ['/', '/usr', '/code', '/tmp', '/etc', '/dev', '/dev/shm']:
    r['w' + d] = writable(d)
r['code'] = sorted(os.listdir('/code'))
r['hello'] = open('/code/hello.txt').read()
r['shadow'] = os.path.exists('/etc/shadow')
r['passwd'] = os.path.exists('/etc/passwd')
r['hostname'] = socket.gethostname()
r['ifaces'] = sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:])
r['uid'] = os.getuid()
r['gid'] = os.getgid()
r['groups'] = os.getgroups()
r['sys'] = os.path.exists('/sys/class')
r['cwd'] = os.getcwd()
r['env'] = os.environ.get('FOO')
r['devnull'] = open('/dev/null', 'w').write('x')
r['urandom'] = len(open('/dev/urandom', 'rb').read(8))
r['nnp'] = [l for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0].split()[1]
r['capeff'] = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]
r['stdin'] = os.read(0, 10).decode()
try:
    with open('/tmp/big', 'wb') as f:
        for i in range(64):
            f.write(b'x' * (1 << 20))
            f.flush()
    r['tmpfull'] = 'no'
except OSError as e:
    r['tmpfull'] = errno.errorcode[e.errno]
print(json.dumps(r))
)PY";

TEST_F(ProcessSandboxTest, IsolatedView) {
  writeCode("probe.py", kProbe);
  writeCode("hello.txt", "hi from code");
  SandboxSpec s = spec("iso-" + randomHex().substr(0, 8), {"/usr/bin/python3", "/code/probe.py"});
  s.env = {"FOO=bar"};
  s.tmpfsBytes = 8LL << 20;

  Pipe out;
  s.stdoutFd = out.w.get();
  s.stderrFd = 2;
  auto sb = backend_->create(s);
  ASSERT_TRUE(sb.isOk()) << sb.status().toString();
  out.w.reset();
  // Nothing of the sandbox is mounted in the host's mount namespace.
  EXPECT_EQ(slurp("/proc/self/mountinfo").find(tmp_.string()), std::string::npos);
  std::string text = readUntilEof(out.r.get());
  auto info = waitExit(**sb);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->exitCode, 0) << text;
  EXPECT_EQ(info->signal, 0);
  EXPECT_FALSE(info->oomKilled);

  boost::json::value v;
  ASSERT_NO_THROW(v = boost::json::parse(text)) << text;
  auto& o = v.as_object();
  // pid namespace: init is 1, the command 2, nothing from the host.
  EXPECT_EQ(o["pid"].as_int64(), 2);
  for (auto& p : o["pids"].as_array()) EXPECT_LE(p.as_int64(), 2);
  EXPECT_EQ(o["w/"].as_string(), "EROFS");
  EXPECT_EQ(o["w/usr"].as_string(), "EROFS");
  EXPECT_EQ(o["w/code"].as_string(), "EROFS");
  EXPECT_EQ(o["w/etc"].as_string(), "EROFS");
  EXPECT_EQ(o["w/dev"].as_string(), "EROFS");
  EXPECT_EQ(o["w/tmp"].as_string(), "yes");
  EXPECT_EQ(o["w/dev/shm"].as_string(), "yes");
  EXPECT_EQ(o["tmpfull"].as_string(), "ENOSPC");
  EXPECT_EQ(o["code"].as_array().size(), 2u);
  EXPECT_EQ(o["hello"].as_string(), "hi from code");
  EXPECT_FALSE(o["shadow"].as_bool());
  EXPECT_TRUE(o["passwd"].as_bool());
  EXPECT_EQ(o["hostname"].as_string(), s.id);
  ASSERT_EQ(o["ifaces"].as_array().size(), 1u);
  EXPECT_EQ(o["ifaces"].as_array()[0].as_string(), "lo");
  EXPECT_EQ(o["uid"].as_int64(), 65534);
  EXPECT_EQ(o["gid"].as_int64(), 65534);
  EXPECT_TRUE(o["groups"].as_array().empty());
  EXPECT_FALSE(o["sys"].as_bool());
  EXPECT_EQ(o["cwd"].as_string(), "/code");
  EXPECT_EQ(o["env"].as_string(), "bar");
  EXPECT_EQ(o["urandom"].as_int64(), 8);
  EXPECT_EQ(o["nnp"].as_string(), "1");
  EXPECT_EQ(o["capeff"].as_string(), "0000000000000000");
  EXPECT_EQ(o["stdin"].as_string(), "");  // /dev/null
}

}  // namespace
}  // namespace stratus
