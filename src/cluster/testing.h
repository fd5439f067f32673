// Test helpers for cluster mode: child processes with their output in a log file, a real etcd on
// loopback (free ports, temporary data dir), free TCP ports, and polling with a deadline.
// Not for production code. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace stratus::testing {

// A port that was free a moment ago (bind 127.0.0.1:0, read it, close).
Result<uint16_t> freePort();

// Polls cond every 20 ms until it holds or the deadline passes.
bool waitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

class ChildProcess {
 public:
  // Starts argv[0] with argv; stdout and stderr go to logFile (appended).
  static Result<std::unique_ptr<ChildProcess>> spawn(std::vector<std::string> argv,
                                                     const std::filesystem::path& logFile);
  ~ChildProcess();  // SIGKILL + reap if still running
  pid_t pid() const { return pid_; }
  bool running();
  // Sends sig and waits up to timeout for the exit; returns the wait status (-1 on timeout).
  int stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  const std::filesystem::path& logFile() const { return logFile_; }
  std::string log() const;  // the log file's text (for failure messages)

 private:
  pid_t pid_ = -1;
  std::filesystem::path logFile_;
};

// etcd on 127.0.0.1 with free client and peer ports and its data under dir.
class EtcdServer {
 public:
  static Result<std::unique_ptr<EtcdServer>> start(const std::filesystem::path& dir);
  ~EtcdServer();
  const std::string& url() const { return url_; }
  void kill();       // SIGKILL, keeps the data dir
  Status restart();  // same ports, same data

 private:
  Status launch();
  std::filesystem::path dir_;
  uint16_t clientPort_ = 0, peerPort_ = 0;
  std::string url_;
  std::unique_ptr<ChildProcess> proc_;
};

}  // namespace stratus::testing
