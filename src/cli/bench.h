// `stratus bench`: measurements of a running Stratus, each reported next to a baseline measured
// in the same run on the same machine with the same load (DESIGN.md section 5), so that the
// numbers are ratios rather than figures that depend on how busy the machine was.
//
//   stratus bench invoke   warm invoke latency and throughput through the whole platform,
//                          against a bare `node` http hello server, with the built-in load
//                          generator (runLoad) and, when installed, wrk.
//
// The helpers below (node baseline, wrk runner) are for the other bench subcommands too.
// Not thread-safe: each runs a measurement from the calling thread.
#pragma once

#include <sys/types.h>

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "http/http_client.h"

namespace stratus {

struct InvokeBenchOptions {
  std::string endpoint;  // e.g. http://127.0.0.1:9000
  std::string key;
  std::string function;
  int requests = 10000;
  int concurrency = 16;
  std::string payload = "{}";
  bool json = false;     // machine-readable results on stdout
  bool baseline = true;  // measure the node baseline (and wrk) in the same run
  int wrkSeconds = 5;    // 0: skip wrk
};

// Prints the report; returns the process exit code (0 when every request succeeded).
int runInvokeBench(const InvokeBenchOptions& options);

// Registers `bench` and its subcommands on app. A failing bench throws CLI::RuntimeError(code)
// from its callback, which CLI11_PARSE / app.exit() turn into the exit code.
void addBenchCommand(CLI::App& app);

// A bare Node.js http server answering every request with 200 "hello" after reading the body:
// the floor that a FaaS platform's own overhead is compared with. Killed on destruction.
class NodeHelloServer {
 public:
  static Result<std::unique_ptr<NodeHelloServer>> start();
  ~NodeHelloServer();
  const std::string& endpoint() const { return endpoint_; }

 private:
  NodeHelloServer(pid_t pid, std::string endpoint) : pid_(pid), endpoint_(std::move(endpoint)) {}
  pid_t pid_;
  std::string endpoint_;
};

struct WrkResult {
  double requestsPerSecond = 0;
  int64_t requests = 0;
  int64_t non2xx = 0;
  int64_t socketErrors = 0;
  int64_t p50Us = 0, p90Us = 0, p99Us = 0, maxUs = 0;
};

// True when a `wrk` binary is on PATH.
bool wrkAvailable();
// Runs wrk (-t2, or -t1 below 2 connections) against url with the given request for `seconds`.
Result<WrkResult> runWrk(const std::string& url, const std::string& method,
                         const HttpHeaders& headers, const std::string& body, int connections,
                         int seconds);
// Parses wrk's --latency report (exposed for tests).
Result<WrkResult> parseWrkOutput(std::string_view text);

}  // namespace stratus
