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
  // Platform outcome. OK means the function ran and `body` is its answer (maybe a function
  // error, see functionError). Otherwise the code says what the platform could not do:
  // kDeadlineExceeded (function timeout), kOutOfMemory (instance killed by its memory limit),
  // kUnavailable (instance crashed / could not start), kResourceExhausted (no capacity).
  Status status;
  FunctionErrorKind functionError = FunctionErrorKind::kNone;
  int httpStatus = 200;  // custom runtime: the function's own status code
  std::map<std::string, std::string> headers;  // custom runtime: the function's headers
  std::string body;
  std::string logTail;  // last 4 KB of the instance's log during this call (if asked)
  // Accounting.
  int64_t durationUs = 0;       // handler execution
  int64_t initDurationUs = 0;   // cold start cost paid by this call (0 when warm)
  bool coldStart = false;
  int64_t memoryPeakBytes = 0;
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
