#include "runtime/protocol.h"

#include <cstring>

namespace stratus::runtime {
namespace {

// The wire format is little-endian regardless of the host; write/read byte by byte so the code
// is also correct on big-endian hosts and never does unaligned loads.
void putLe(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t getLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

bool isKnownType(uint16_t t) {
  return t >= static_cast<uint16_t>(FrameType::kHello) &&
         t <= static_cast<uint16_t>(FrameType::kError);
}

}  // namespace

std::string encodeFrame(FrameType type, const json::object& meta, std::string_view body) {
  std::string metaText = json::serialize(meta);
  std::string out;
  out.reserve(sizeof(FrameHeader) + metaText.size() + body.size());
  putLe(out, kFrameMagic, 4);
  putLe(out, kProtocolVersion, 2);
  putLe(out, static_cast<uint16_t>(type), 2);
  putLe(out, metaText.size(), 4);
  putLe(out, body.size(), 4);
  out.append(metaText);
  out.append(body);
  return out;
}

Result<bool> FrameDecoder::next(Frame& out) {
  const size_t avail = buf_.size() - off_;
  if (avail < sizeof(FrameHeader)) {
    // Keep the buffer from growing without bound when frames are consumed one by one.
    if (off_ > 0) {
      buf_.erase(0, off_);
      off_ = 0;
    }
    return false;
  }
  const char* h = buf_.data() + off_;
  const auto magic = static_cast<uint32_t>(getLe(h, 4));
  const auto version = static_cast<uint16_t>(getLe(h + 4, 2));
  const auto type = static_cast<uint16_t>(getLe(h + 6, 2));
  const auto metaLen = static_cast<uint32_t>(getLe(h + 8, 4));
  const auto bodyLen = static_cast<uint32_t>(getLe(h + 12, 4));
  if (magic != kFrameMagic) return invalidArgument("runtime protocol: bad frame magic");
  if (version != kProtocolVersion) {
    return invalidArgument("runtime protocol: unsupported version " + std::to_string(version));
  }
  if (!isKnownType(type)) {
    return invalidArgument("runtime protocol: unknown frame type " + std::to_string(type));
  }
  if (metaLen > kMaxMetaBytes) {
    return invalidArgument("runtime protocol: frame meta of " + std::to_string(metaLen) +
                           " bytes exceeds " + std::to_string(kMaxMetaBytes));
  }
  if (bodyLen > kMaxBodyBytes) {
    return invalidArgument("runtime protocol: frame body of " + std::to_string(bodyLen) +
                           " bytes exceeds " + std::to_string(kMaxBodyBytes));
  }
  const size_t total = sizeof(FrameHeader) + size_t{metaLen} + size_t{bodyLen};
  if (avail < total) {
    if (off_ > 0) {
      buf_.erase(0, off_);
      off_ = 0;
    }
    buf_.reserve(total);
    return false;
  }
  std::string_view metaText(buf_.data() + off_ + sizeof(FrameHeader), metaLen);
  json::object meta;
  if (metaLen > 0) {  // an empty meta section is read as {}
    boost::system::error_code ec;
    json::value v = json::parse(metaText, ec);
    if (ec) return invalidArgument("runtime protocol: malformed frame meta: " + ec.message());
    if (!v.is_object()) return invalidArgument("runtime protocol: frame meta is not an object");
    meta = std::move(v.as_object());
  }
  out.type = static_cast<FrameType>(type);
  out.meta = std::move(meta);
  out.body.assign(buf_.data() + off_ + sizeof(FrameHeader) + metaLen, bodyLen);
  off_ += total;
  if (off_ == buf_.size()) {
    buf_.clear();
    off_ = 0;
  }
  return true;
}

}  // namespace stratus::runtime
