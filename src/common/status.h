// Error policy for all of Stratus.
//
// Expected failures -- bad input, a full pool, a dead sandbox, a missing function, a failed
// system call -- are values: Status (no payload) or Result<T> (a T or a Status). Each carries a
// code that the API layer maps to an HTTP status and a message written for a human that says
// what was being done ("mount /code for instance i-42: EPERM (Operation not permitted)").
// Broken invariants are bugs and crash loudly (assert / std::abort), never Status.
//
// Status and Result are plain values: copyable, movable, not thread-safe to mutate concurrently.
#pragma once

#include <cassert>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace stratus {

// Values are stable: they cross process boundaries (worker <-> controller RPC, logs).
enum class Code : int32_t {
  kOk = 0,
  kInvalidArgument = 1,     // caller's input is wrong (HTTP 400)
  kNotFound = 2,            // HTTP 404
  kAlreadyExists = 3,       // HTTP 409
  kPermissionDenied = 4,    // authenticated but not allowed (HTTP 403)
  kUnauthenticated = 5,     // missing or wrong credentials (HTTP 401)
  kResourceExhausted = 6,   // limits, quotas, full pools (HTTP 429 / 503)
  kFailedPrecondition = 7,  // state does not allow it (HTTP 412/409)
  kUnavailable = 8,         // transient: retry may succeed (HTTP 503)
  kDeadlineExceeded = 9,    // a timeout fired (HTTP 504 / function timeout)
  kInternal = 10,           // our bug or an unexpected system failure (HTTP 500)
  kPayloadTooLarge = 11,    // body or package over its limit (HTTP 413)
  kOutOfMemory = 12,        // a sandbox hit its memory limit
  kAborted = 13,            // work cancelled (shutdown, revision drained)
};

std::string_view codeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  // "context: ENAME (strerror)". Use right after a failed system call: Status::fromErrno(errno,
  // "mount /code for i-42").
  static Status fromErrno(int err, std::string_view context);

  bool isOk() const { return code_ == Code::kOk; }
  explicit operator bool() const { return isOk(); }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // errno of the failed system call, 0 if none.
  int sysErrno() const { return errno_; }

  // Prefixes the message with more context: "start instance i-1: mount /code: EPERM".
  Status withContext(std::string_view context) const;
  std::string toString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  int errno_ = 0;
};

// Builders for the common cases.
inline Status invalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status notFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status alreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
inline Status internalError(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Status unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).isOk() && "Result built from an OK Status");
  }

  bool isOk() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return isOk(); }

  const Status& status() const {
    static const Status kOk;
    return isOk() ? kOk : std::get<Status>(v_);
  }
  T& value() & {
    assert(isOk());
    return std::get<T>(v_);
  }
  const T& value() const& {
    assert(isOk());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(isOk());
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace stratus

// Early-return helpers. RETURN_IF_ERROR works on Status; ASSIGN_OR_RETURN on Result<T>.
#define STRATUS_CONCAT_INNER(a, b) a##b
#define STRATUS_CONCAT(a, b) STRATUS_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::stratus::Status _st = (expr);                \
    if (!_st.isOk()) return _st;                   \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr)                               \
  auto STRATUS_CONCAT(_res_, __LINE__) = (expr);                  \
  if (!STRATUS_CONCAT(_res_, __LINE__).isOk())                    \
    return STRATUS_CONCAT(_res_, __LINE__).status();              \
  lhs = std::move(STRATUS_CONCAT(_res_, __LINE__)).value()
