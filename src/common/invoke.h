// Invocation values and the Invoker seam.
//
// The API turns an HTTP invoke into an InvokeRequest and hands it to an Invoker, which finds an
// instance (scheduler) and runs the call on it (worker). All-in-one mode wires LocalInvoker
// (src/cluster/local_invoker.h: scheduler + worker in process); cluster mode replaces it with a
// remote one. These structs cross process boundaries there, so they stay plain values.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "common/function.h"
#include "common/status.h"

namespace stratus {

struct InvokeRequest {
  std::string requestId;
  std::string payload;      // the event, raw bytes (JSON for python3/nodejs handlers)
  bool wantLogTail = false;  // x-fc-log-type: Tail
  // Extra request headers for the custom runtime (x-fc-* and user headers).
  std::map<std::string, std::string> headers;
};

enum class FunctionErrorKind : int32_t { kNone = 0, kHandled = 1, kUnhandled = 2 };

struct InvokeResult {
  // Platform outcome. Non-OK only when the platform could not run the call: no capacity
  // (kResourceExhausted), a sandbox that could not be created (kUnavailable), shutdown
  // (kAborted), an unknown function (kNotFound). The API answers those with 4xx/5xx.
  //
  // Everything the *function* caused is OK + functionError, as Lambda and Function Compute do
  // (HTTP 200 + x-fc-error-type), with body {"errorType", "errorMessage", "stackTrace"?}:
  //   handler exception            kUnhandled, errorType = the exception's type
  //   node callback(err)           kHandled
  //   init failure (bad handler)   kUnhandled, errorType e.g. "Runtime.ImportModuleError"
  //   timeout                      kUnhandled, errorType "FunctionTimeout"
  //   memory limit (OOM kill)      kUnhandled, errorType "OutOfMemory"
  //   runtime process exited       kUnhandled, errorType "RuntimeExited" (code/signal in message)
  Status status;
  FunctionErrorKind functionError = FunctionErrorKind::kNone;
  int httpStatus = 200;  // custom runtime: the function's own status code
  std::map<std::string, std::string> headers;  // custom runtime: the function's headers
  std::string body;
  std::string logTail;  // last 4 KB of the instance's log during this call (if asked)
  // The instance that ran the call is gone (timeout recycle, crash, OOM): do not reuse it.
  bool instanceLost = false;
  // Accounting.
  int64_t durationUs = 0;       // handler execution
  int64_t initDurationUs = 0;   // cold start cost paid by this call (0 when warm)
  bool coldStart = false;
  int64_t memoryPeakBytes = 0;
  // CPU time (user + system) the instance's sandbox used while this call ran; with
  // instanceConcurrency > 1, overlapping calls each see the instance's whole CPU of their window.
  int64_t cpuTimeNs = 0;
  std::string instanceId;
};

using InvokeCallback = std::function<void(InvokeResult)>;

class Invoker {
 public:
  virtual ~Invoker() = default;
  // Runs one call. `done` is called exactly once, possibly on another thread, possibly before
  // invoke() returns.
  virtual void invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) = 0;
  // The function was updated (new revision) or deleted: drain and stop its old instances.
  virtual void functionChanged(const FunctionSpec& fn) = 0;
  virtual void functionDeleted(const FunctionSpec& fn) = 0;
  // Stops accepting work, waits for running calls (bounded), stops every instance.
  virtual void shutdown() = 0;
};

}  // namespace stratus
