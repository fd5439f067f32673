// Runtimes: what runs inside a sandbox for each `runtime` value of a function.
//
//   python3, nodejs  built-in bootstraps (bootstrap.py, bootstrap.js, embedded in the binary)
//                    speaking the frame protocol of protocol.h; AWS-Lambda-compatible handlers.
//   custom           the user's HTTP server (Alibaba FC custom runtime): /code/bootstrap or
//                    customRuntimeConfig.command, listening on port 9000 (or .port); the worker
//                    sends POST /invoke (custom_http.h).
// Stateless; thread-safe.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/function.h"
#include "common/status.h"

namespace stratus::runtime {

enum class Kind { kFrameProtocol, kCustomHttp };

// Where the runtime assets directory is mounted inside every sandbox.
constexpr std::string_view kAssetsMountPoint = "/opt/stratus/runtime";
// Where the worker's socket directory is mounted inside every sandbox.
constexpr std::string_view kSocketMountPoint = "/run/stratus";
constexpr std::string_view kSocketPathInSandbox = "/run/stratus/rt.sock";

bool isKnownRuntime(std::string_view name);
// "python3, nodejs, custom", for error messages.
std::string knownRuntimesList();
Kind kindOf(std::string_view runtime);

// Writes the embedded bootstrap files into dir (python3/bootstrap.py, nodejs/bootstrap.js),
// replacing older copies. dir is then mounted read-only at kAssetsMountPoint.
// (python3/bootstrap.py is a launcher for python3/stratus_runtime.py, which is also compiled to
// python3/stratus_runtime.pyc with /usr/bin/python3 when that works: best effort.)
Status installAssets(const std::filesystem::path& dir);

// argv (paths inside the sandbox) and environment (KEY=VALUE) to start fn's runtime: the
// function's environmentVariables plus FC_* / AWS_LAMBDA_* variables and
// STRATUS_RUNTIME_SOCKET for frame-protocol runtimes.
std::vector<std::string> commandFor(const FunctionSpec& fn);
std::vector<std::string> environmentFor(const FunctionSpec& fn);

}  // namespace stratus::runtime
