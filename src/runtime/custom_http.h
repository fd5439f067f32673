// HTTP/1.1 for the custom runtime: the worker writes a request to the user's server on port 9000
// inside the sandbox and parses the response incrementally (Content-Length or chunked).
// No Beast here on purpose: this is on the worker's data path and must stay cheap to compile.
// Stateless helpers / single-owner parser; not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/status.h"

namespace stratus::runtime {

// "POST {path} HTTP/1.1" with Host, Content-Length, Connection: keep-alive and the given headers
// (x-fc-request-id, x-fc-function-name, ...).
std::string buildHttpRequest(std::string_view method, std::string_view path,
                             const std::map<std::string, std::string>& headers,
                             std::string_view body);

class HttpResponseParser {
 public:
  // Feeds bytes; returns true once a whole response has been parsed. Errors on malformed input
  // or a response larger than maxBytes.
  Result<bool> feed(std::string_view bytes);
  int status() const { return status_; }
  const std::map<std::string, std::string>& headers() const { return headers_; }  // lower-cased
  const std::string& body() const { return body_; }
  void reset();
  static constexpr size_t kMaxBytes = 64u << 20;

 private:
  std::string buf_;
  int status_ = 0;
  std::map<std::string, std::string> headers_;
  std::string body_;
  bool headersDone_ = false;
  bool chunked_ = false;
  int64_t contentLength_ = -1;
  bool done_ = false;
};

}  // namespace stratus::runtime
