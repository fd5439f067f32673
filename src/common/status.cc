#include "common/status.h"

#include <cstring>

namespace stratus {

std::string_view codeName(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "InvalidArgument";
    case Code::kNotFound: return "NotFound";
    case Code::kAlreadyExists: return "AlreadyExists";
    case Code::kPermissionDenied: return "PermissionDenied";
    case Code::kUnauthenticated: return "Unauthenticated";
    case Code::kResourceExhausted: return "ResourceExhausted";
    case Code::kFailedPrecondition: return "FailedPrecondition";
    case Code::kUnavailable: return "Unavailable";
    case Code::kDeadlineExceeded: return "DeadlineExceeded";
    case Code::kInternal: return "Internal";
    case Code::kPayloadTooLarge: return "PayloadTooLarge";
    case Code::kOutOfMemory: return "OutOfMemory";
    case Code::kAborted: return "Aborted";
  }
  return "Unknown";
}

Status Status::fromErrno(int err, std::string_view context) {
  const char* name = strerrorname_np(err);
  std::string msg(context);
  msg += ": ";
  msg += name != nullptr ? name : "E?";
  msg += " (";
  msg += strerrordesc_np(err) != nullptr ? strerrordesc_np(err) : "unknown error";
  msg += ")";
  Code code = Code::kInternal;
  switch (err) {
    case ENOENT: code = Code::kNotFound; break;
    case EEXIST: code = Code::kAlreadyExists; break;
    case EPERM:
    case EACCES: code = Code::kPermissionDenied; break;
    case EINVAL: code = Code::kInvalidArgument; break;
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
    case EAGAIN: code = Code::kResourceExhausted; break;
    case ETIMEDOUT: code = Code::kDeadlineExceeded; break;
    default: break;
  }
  Status s(code, std::move(msg));
  s.errno_ = err;
  return s;
}

Status Status::withContext(std::string_view context) const {
  if (isOk()) return *this;
  Status s(code_, std::string(context) + ": " + message_);
  s.errno_ = errno_;
  return s;
}

std::string Status::toString() const {
  if (isOk()) return "OK";
  return std::string(codeName(code_)) + ": " + message_;
}

}  // namespace stratus
