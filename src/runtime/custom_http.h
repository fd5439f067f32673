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
  // The server closed the connection. Completes a response whose body is delimited by the close
  // (no Content-Length, not chunked: HTTP/1.0-style servers such as Python's http.server); for any
  // other unfinished response it is an error (truncated). Returns true once a response is whole.
  Result<bool> feedEof();
  // After a whole response: whether the connection may carry the next request (not
  // `Connection: close`, not HTTP/1.0 without keep-alive, not delimited by close).
  bool keepAlive() const { return keepAlive_; }
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
  // Parser state beyond the contract's fields.
  Status parseHeaders(std::string_view head);
  Result<bool> parseBody();
  size_t pos_ = 0;           // consumed prefix of buf_
  size_t total_ = 0;         // bytes fed since reset(), for kMaxBytes
  int64_t chunkLeft_ = -1;   // bytes left in the current chunk; -1: expecting a size line
  bool inTrailers_ = false;  // after the last chunk
  bool untilClose_ = false;  // body delimited by connection close
  bool keepAlive_ = true;
};

}  // namespace stratus::runtime
