#include "runtime/custom_http.h"

#include <algorithm>
#include <charconv>
#include <optional>

namespace stratus::runtime {
namespace {

constexpr size_t kMaxHeaderBytes = 64u << 10;  // status line + headers
constexpr size_t kMaxLineBytes = 4096;         // a chunk-size line or a trailer line

Status malformed(std::string_view what) {
  return invalidArgument("malformed HTTP response from the custom runtime: " + std::string(what));
}

Status tooLarge() {
  return Status(Code::kPayloadTooLarge, "custom runtime response exceeds " +
                                            std::to_string(HttpResponseParser::kMaxBytes) +
                                            " bytes");
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool isTokenChar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// Header names and values come partly from the caller's HTTP request; drop anything that could
// end a header line early (request splitting).
bool safeHeader(std::string_view name, std::string_view value) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (!isTokenChar(c)) return false;
  }
  for (unsigned char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

// Finds the end of one line starting at `from`: returns {index of '\n', length without "\r\n"}.
std::optional<std::pair<size_t, size_t>> findLine(const std::string& buf, size_t from) {
  size_t nl = buf.find('\n', from);
  if (nl == std::string::npos) return std::nullopt;
  size_t len = nl - from;
  if (len > 0 && buf[nl - 1] == '\r') --len;
  return std::make_pair(nl, len);
}

}  // namespace

std::string buildHttpRequest(std::string_view method, std::string_view path,
                             const std::map<std::string, std::string>& headers,
                             std::string_view body) {
  std::string out;
  out.reserve(128 + body.size() + headers.size() * 48);
  out.append(method).append(" ").append(path).append(" HTTP/1.1\r\n");
  out.append("Host: 127.0.0.1\r\nContent-Length: ").append(std::to_string(body.size()));
  out.append("\r\nConnection: keep-alive\r\n");
  for (const auto& [name, value] : headers) {
    const std::string l = lower(name);
    // Framing headers are ours: a caller-supplied one would desynchronise the connection.
    if (l == "host" || l == "content-length" || l == "connection" || l == "transfer-encoding") {
      continue;
    }
    if (!safeHeader(name, value)) continue;
    out.append(name).append(": ").append(value).append("\r\n");
  }
  out.append("\r\n");
  out.append(body);
  return out;
}

void HttpResponseParser::reset() {
  buf_.clear();
  status_ = 0;
  headers_.clear();
  body_.clear();
  headersDone_ = false;
  chunked_ = false;
  contentLength_ = -1;
  done_ = false;
  pos_ = 0;
  total_ = 0;
  chunkLeft_ = -1;
  inTrailers_ = false;
  untilClose_ = false;
  keepAlive_ = true;
}

Status HttpResponseParser::parseHeaders(std::string_view head) {
  status_ = 0;
  headers_.clear();
  size_t lineStart = 0;
  bool first = true;
  bool http10 = false;
  while (lineStart < head.size()) {
    size_t nl = head.find('\n', lineStart);
    if (nl == std::string_view::npos) nl = head.size();
    std::string_view line = head.substr(lineStart, nl - lineStart);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lineStart = nl + 1;
    if (first) {
      first = false;
      // "HTTP/1.1 200 OK" (the reason phrase may be empty or absent).
      if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ' ||
          (line[7] != '0' && line[7] != '1') || (line.size() > 12 && line[12] != ' ')) {
        return malformed("bad status line");
      }
      http10 = line[7] == '0';
      int code = 0;
      auto [p, ec] = std::from_chars(line.data() + 9, line.data() + 12, code);
      if (ec != std::errc() || p != line.data() + 12 || code < 100 || code > 599) {
        return malformed("bad status code");
      }
      status_ = code;
      continue;
    }
    if (line.empty()) continue;
    if (line.front() == ' ' || line.front() == '\t') return malformed("folded header line");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return malformed("header line without name");
    std::string_view name = line.substr(0, colon);
    for (unsigned char c : name) {
      if (!isTokenChar(c)) return malformed("bad header name");
    }
    std::string key = lower(name);
    std::string_view value = trim(line.substr(colon + 1));
    auto it = headers_.find(key);
    if (it == headers_.end()) {
      headers_.emplace(std::move(key), std::string(value));
    } else if (key == "content-length") {
      if (it->second != value) return malformed("conflicting Content-Length headers");
    } else {
      it->second.append(", ").append(value);
    }
  }
  if (first) return malformed("empty response head");

  chunked_ = false;
  contentLength_ = -1;
  untilClose_ = false;
  const auto conn = headers_.find("connection");
  const std::string connection = conn == headers_.end() ? "" : lower(conn->second);
  keepAlive_ = http10 ? connection.find("keep-alive") != std::string::npos
                      : connection.find("close") == std::string::npos;
  if (status_ < 200 || status_ == 204 || status_ == 304) return Status::ok();  // no body
  if (auto te = headers_.find("transfer-encoding"); te != headers_.end()) {
    std::string v = lower(te->second);
    std::string_view last = v;
    if (size_t comma = last.rfind(','); comma != std::string_view::npos) {
      last.remove_prefix(comma + 1);
    }
    if (trim(last) == "chunked") {
      chunked_ = true;
    } else {
      untilClose_ = true;  // RFC 9112 6.3: a non-chunked transfer coding runs until close
      keepAlive_ = false;
    }
    return Status::ok();
  }
  if (auto cl = headers_.find("content-length"); cl != headers_.end()) {
    const std::string& v = cl->second;
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec == std::errc::result_out_of_range) {
      return ec == std::errc::result_out_of_range ? tooLarge() : malformed("bad Content-Length");
    }
    if (ec != std::errc() || p != v.data() + v.size()) return malformed("bad Content-Length");
    if (n > kMaxBytes) return tooLarge();
    contentLength_ = static_cast<int64_t>(n);
    return Status::ok();
  }
  untilClose_ = true;
  keepAlive_ = false;
  return Status::ok();
}

Result<bool> HttpResponseParser::parseBody() {
  if (status_ < 200 || status_ == 204 || status_ == 304) return true;
  if (contentLength_ >= 0) {
    size_t want = static_cast<size_t>(contentLength_) - body_.size();
    size_t take = std::min(want, buf_.size() - pos_);
    body_.append(buf_, pos_, take);
    pos_ += take;
    return body_.size() == static_cast<size_t>(contentLength_);
  }
  if (untilClose_) {
    body_.append(buf_, pos_, std::string::npos);
    pos_ = buf_.size();
    return false;  // complete only at feedEof()
  }
  // Chunked.
  for (;;) {
    if (inTrailers_) {
      auto line = findLine(buf_, pos_);
      if (!line) {
        if (buf_.size() - pos_ > kMaxLineBytes) return malformed("trailer line too long");
        return false;
      }
      pos_ = line->first + 1;
      if (line->second == 0) return true;
      continue;
    }
    if (chunkLeft_ < 0) {
      auto line = findLine(buf_, pos_);
      if (!line) {
        if (buf_.size() - pos_ > kMaxLineBytes) return malformed("chunk size line too long");
        return false;
      }
      std::string_view sizeText(buf_.data() + pos_, line->second);
      if (size_t semi = sizeText.find(';'); semi != std::string_view::npos) {
        sizeText = sizeText.substr(0, semi);  // chunk extensions are ignored
      }
      sizeText = trim(sizeText);
      uint64_t n = 0;
      auto [p, ec] = std::from_chars(sizeText.data(), sizeText.data() + sizeText.size(), n, 16);
      if (ec == std::errc::result_out_of_range) return tooLarge();
      if (sizeText.empty() || ec != std::errc() || p != sizeText.data() + sizeText.size()) {
        return malformed("bad chunk size");
      }
      if (n > kMaxBytes || body_.size() + n > kMaxBytes) return tooLarge();
      pos_ = line->first + 1;
      if (n == 0) {
        inTrailers_ = true;
        continue;
      }
      chunkLeft_ = static_cast<int64_t>(n);
    }
    if (chunkLeft_ > 0) {
      size_t take = std::min(static_cast<size_t>(chunkLeft_), buf_.size() - pos_);
      body_.append(buf_, pos_, take);
      pos_ += take;
      chunkLeft_ -= static_cast<int64_t>(take);
      if (chunkLeft_ > 0) return false;
    }
    // chunkLeft_ == 0: the chunk's data is followed by CRLF.
    if (pos_ >= buf_.size()) return false;
    if (buf_[pos_] == '\r') {
      if (pos_ + 1 >= buf_.size()) return false;
      if (buf_[pos_ + 1] != '\n') return malformed("chunk not followed by CRLF");
      pos_ += 2;
    } else if (buf_[pos_] == '\n') {
      pos_ += 1;
    } else {
      return malformed("chunk not followed by CRLF");
    }
    chunkLeft_ = -1;
  }
}

Result<bool> HttpResponseParser::feed(std::string_view bytes) {
  if (done_) {
    if (bytes.empty()) return true;
    return malformed("data after a complete response");
  }
  total_ += bytes.size();
  if (total_ > kMaxBytes) return tooLarge();
  const size_t scanFrom = buf_.size() >= 3 ? buf_.size() - 3 : 0;
  buf_.append(bytes);
  while (!headersDone_) {
    // The head ends at the first empty line ("\r\n\r\n", tolerating bare "\n").
    size_t from = std::max(pos_, scanFrom);
    size_t end = std::string::npos;
    size_t sepLen = 0;
    for (size_t i = buf_.find('\n', from); i != std::string::npos; i = buf_.find('\n', i + 1)) {
      if (i + 1 < buf_.size() && buf_[i + 1] == '\n') {
        end = i + 1;
        sepLen = 1;
        break;
      }
      if (i + 2 < buf_.size() && buf_[i + 1] == '\r' && buf_[i + 2] == '\n') {
        end = i + 1;
        sepLen = 2;
        break;
      }
    }
    if (end == std::string::npos) {
      if (buf_.size() - pos_ > kMaxHeaderBytes) return malformed("response head too large");
      return false;
    }
    std::string_view head(buf_.data() + pos_, end - pos_);
    RETURN_IF_ERROR(parseHeaders(head));
    pos_ = end + sepLen;
    // 1xx interim responses (100 Continue, 103 Early Hints) precede the real one.
    if (status_ >= 100 && status_ < 200 && status_ != 101) {
      status_ = 0;
      headers_.clear();
      continue;
    }
    headersDone_ = true;
  }
  ASSIGN_OR_RETURN(bool complete, parseBody());
  if (complete) {
    done_ = true;
    if (pos_ != buf_.size()) return malformed("data after a complete response");
  }
  buf_.erase(0, pos_);
  pos_ = 0;
  return complete;
}

Result<bool> HttpResponseParser::feedEof() {
  if (done_) return true;
  if (headersDone_ && untilClose_) {
    done_ = true;
    keepAlive_ = false;
    return true;
  }
  return unavailable(headersDone_ || !buf_.empty()
                         ? "custom runtime closed the connection in the middle of a response"
                         : "custom runtime closed the connection without responding");
}

}  // namespace stratus::runtime
