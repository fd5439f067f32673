// `stratus bench codeload`: what on-demand code loading buys (seed 2.4). A large package whose
// handler touches one small file, deployed as a code pack into an origin blob store served over
// HTTP on loopback; then, on fresh host caches, the time until the handler's file can be read
// (and until a handler process answers) with
//   * full:  download the whole pack, verify it, extract it (the classic way, and our no-FUSE
//            fallback), versus
//   * lazy:  fetch the index, mount the FUSE view, read by range (the whole pack keeps
//            downloading behind it).
// The same for a tiny package shows that lazy loading costs small packages nothing. Runs in
// the calling process (needs root and /dev/fuse for the lazy tier); no server is needed.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace stratus {

struct CodeloadBenchOptions {
  int sizeMb = 90;          // the large package's unpacked size
  int runs = 5;             // per package and mode; medians are reported
  int64_t originMbps = 0;   // > 0: the origin serves at most this many megabits per second
  int originLatencyMs = 0;  // added to every origin request (a remote store's first byte)
  bool json = false;
  std::string workDir;  // default: a fresh directory under $TMPDIR
};

// Prints the report; returns the process exit code (0: ran; the verdicts are in the report).
int runCodeloadBench(const CodeloadBenchOptions& options);

// Registers `codeload` under the `bench` command.
void addCodeloadBench(CLI::App* bench);

}  // namespace stratus
