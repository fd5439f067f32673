// Test support for the tests that run real process sandboxes (process_sandbox_test.cc,
// hardening_test.cc, code_mount_test.cc): small file helpers, deadline-bounded reads and exit
// waits (poll on the fd or pidfd, never sleep), and the host-side setup every such fixture needs.
// Header-only; test code only.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>

#include "sandbox/process_sandbox.h"

namespace stratus::sandbox_test {

inline std::string randomHex() {
  std::random_device rd;
  std::ostringstream o;
  o << std::hex << rd() << rd();
  return o.str();
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes s to p (truncating); the mode is left alone (cgroupfs files, existing files).
inline void put(const std::filesystem::path& p, const std::string& s) {
  std::ofstream(p, std::ios::trunc) << s;
}
// Writes s to p, then sets its mode.
inline void put(const std::filesystem::path& p, const std::string& s, mode_t mode) {
  put(p, s);
  ::chmod(p.c_str(), mode);
}

// A python3 server for connectTcp tests: listens on 127.0.0.1:9000 inside the sandbox, prints
// "ready", and answers every connection with $TOKEN.
inline constexpr const char* kTokenServerPy = R"PY(
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 9000))
s.listen(16)
print('ready', flush=True)
while True:
    c, _ = s.accept()
    c.sendall(os.environ['TOKEN'].encode())
    c.close()
)PY";

inline int msLeft(std::chrono::steady_clock::time_point deadline) {
  return static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count());
}

// Reads from fd until `want` appears (never, when empty), EOF, or the deadline; the sandboxed
// command holds the write end.
inline std::string readUntil(int fd, const std::string& want,
                             std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (want.empty() || out.find(want) == std::string::npos) {
    int left = msLeft(deadline);
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

inline std::string readUntilEof(int fd,
                                std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  return readUntil(fd, "", timeout);
}

// Waits (on the pidfd, no sleeping) for the sandbox's init to exit and returns its exit info.
inline std::optional<ExitInfo> waitExit(
    Sandbox& s, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto r = s.pollExit();
    if (!r.isOk()) return std::nullopt;
    if (r->has_value()) return **r;
    int left = msLeft(deadline);
    if (left <= 0) return std::nullopt;
    pollfd p{s.pidFd(), POLLIN, 0};
    ::poll(&p, 1, left);
  }
}

// The host side of a sandbox test: a fresh temp dir <tmp>/<prefix>XXXXXX (0755, so that sandbox
// uids can traverse it) holding an empty 0755 code/ dir, and a backend with its own state dir and
// cgroup parent, so that test binaries can run in parallel. Fails the test fatally on error: call
// as ASSERT_NO_FATAL_FAILURE(setUpSandboxHost(...)).
inline void setUpSandboxHost(const std::string& prefix, std::filesystem::path& tmp,
                             std::filesystem::path& code, std::string& cgroupParent,
                             std::unique_ptr<ProcessSandboxBackend>& backend) {
  std::string t = (std::filesystem::temp_directory_path() / (prefix + "XXXXXX")).string();
  ASSERT_NE(::mkdtemp(t.data()), nullptr);
  tmp = t;
  ::chmod(tmp.c_str(), 0755);
  cgroupParent = "stratus-test-" + randomHex();
  ProcessSandboxOptions o;
  o.stateDir = tmp / "state";
  o.cgroupParent = cgroupParent;
  auto b = ProcessSandboxBackend::create(o);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  backend = std::move(b).value();
  code = tmp / "code";
  std::filesystem::create_directory(code);
  ::chmod(code.c_str(), 0755);
}

}  // namespace stratus::sandbox_test
