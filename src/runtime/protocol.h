// The worker <-> runtime protocol for the built-in python3 and nodejs runtimes.
//
// Transport: a Unix stream socket. The worker listens on <instance state dir>/rt.sock, which is
// bind-mounted into the sandbox at /run/stratus/rt.sock; the bootstrap connects to the path in
// $STRATUS_RUNTIME_SOCKET. Never host TCP.
//
// Framing: every message is a 16-byte FrameHeader (little-endian) followed by `metaLen` bytes of
// a JSON object and `bodyLen` raw bytes.
//
// Conversation:
//   runtime -> kHello   meta {runtime, pid}
//   worker  -> kLoad    meta {handler, codeDir, functionName, memoryMb, timeoutSec,
//                             initializer, env:{K:V}}        (code may be mounted late: issue 4)
//                        optional: instanceConcurrency (1 lets python run calls on its reading
//                        thread), initializationTimeoutSec (initializer's deadline; default
//                        timeoutSec)
//   runtime -> kReady   meta {initDurationMs}   | kInitError meta {errorType, errorMessage,
//                                                                  stackTrace:[...]}
//   then any number of, interleaved up to instanceConcurrency at once:
//   worker  -> kInvoke  meta {requestId, deadlineMs (unix ms), functionName, memoryMb}, body event
//   runtime -> kResult  meta {requestId}, body = JSON-encoded return value
//           |  kError   meta {requestId, errorType, errorMessage, stackTrace:[...]}
// The bootstraps in runtime/python3/bootstrap.py and runtime/nodejs/bootstrap.js implement the
// other end. Stateless helpers; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/json.h"
#include "common/status.h"

namespace stratus::runtime {

enum class FrameType : uint16_t {
  kHello = 1,
  kLoad = 2,
  kReady = 3,
  kInitError = 4,
  kInvoke = 5,
  kResult = 6,
  kError = 7,
};

constexpr uint32_t kFrameMagic = 0x46525453;  // "STRF" little-endian
constexpr uint16_t kProtocolVersion = 1;
constexpr uint32_t kMaxMetaBytes = 1u << 20;   // 1 MiB
constexpr uint32_t kMaxBodyBytes = 64u << 20;  // 64 MiB

struct FrameHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t metaLen;
  uint32_t bodyLen;
};
static_assert(sizeof(FrameHeader) == 16, "FrameHeader is a wire struct");

struct Frame {
  FrameType type;
  json::object meta;
  std::string body;
};

// Serialises a frame (header + meta JSON + body).
std::string encodeFrame(FrameType type, const json::object& meta, std::string_view body = {});

// Incremental decoder for a byte stream: feed() what was read, then take frames with next().
// A malformed stream (bad magic/version, oversized lengths, meta not a JSON object) is an error;
// the connection should then be dropped.
class FrameDecoder {
 public:
  void feed(std::string_view bytes) { buf_.append(bytes); }
  // nullopt-like: returns OK + false when more bytes are needed.
  Result<bool> next(Frame& out);

 private:
  std::string buf_;
  size_t off_ = 0;
};

}  // namespace stratus::runtime
