// Transport-neutral HTTP request/response values. The gateway converts Beast messages to these so
// that api/ and everything below it never include Boost.Beast (which costs ~25 s per TU to
// compile). Header names are matched case-insensitively. Plain values; not thread-safe.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stratus {

struct CaseInsensitiveLess {
  bool operator()(std::string_view a, std::string_view b) const;
  using is_transparent = void;
};

using HttpHeaders = std::map<std::string, std::string, CaseInsensitiveLess>;

// Adds the fields of a parsed message (anything iterable whose elements have name_string() and
// value(), e.g. a Beast header) to `out`; a repeated name's values are joined with ", " as
// RFC 9110 allows for list-valued fields. A template so that this header stays Beast-free.
template <typename Fields>
void appendHeaderFields(const Fields& fields, HttpHeaders& out) {
  for (const auto& f : fields) {
    auto [it, inserted] = out.emplace(f.name_string(), f.value());
    if (!inserted) {
      it->second += ", ";
      it->second.append(f.value());
    }
  }
}

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // decoded path without the query, e.g. "/2023-03-30/functions/hello"
  std::map<std::string, std::string> query;  // decoded query parameters
  HttpHeaders headers;
  std::string body;
  std::string remoteAddress;  // "ip:port" of the client, for logs and rate limits

  std::optional<std::string_view> header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  HttpHeaders headers;
  std::string body;
};

using HttpRespond = std::function<void(HttpResponse)>;
// Handles one request; calls respond exactly once, possibly later and from another thread.
using HttpHandler = std::function<void(HttpRequest, HttpRespond)>;

// Splits a path into its non-empty segments: "/a//b/" -> {"a", "b"}.
std::vector<std::string_view> splitPath(std::string_view path);
// Percent-decodes a URL component; returns nullopt on malformed escapes.
std::optional<std::string> percentDecode(std::string_view s);
// Parses "a=1&b=2" (percent-decoded, '+' as space).
std::map<std::string, std::string> parseQuery(std::string_view query);

}  // namespace stratus
