#include "codepack/pack_format.h"

#include <limits.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace stratus {
namespace {

Status corrupt(std::string why) {
  return invalidArgument("corrupt code pack index: " + std::move(why));
}

bool validName(std::string_view n) {
  if (n.empty() || n.size() > NAME_MAX || n == "." || n == "..") return false;
  return n.find('/') == std::string_view::npos && n.find('\0') == std::string_view::npos;
}

}  // namespace

std::string toHex(const uint8_t* h, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kDigits[h[i] >> 4];
    s[2 * i + 1] = kDigits[h[i] & 15];
  }
  return s;
}

std::string toHex(const Sha256& h) { return toHex(h.data(), h.size()); }

// A symlink at depth `depth` (number of directories between the root and the link) may point
// only to "../" * k followed by plain names, with k <= depth. Allowing ".." only up front keeps
// the lexical check exact: the leading ".." steps walk up through the link's real ancestor
// directories, and the plain names walk down through entries that are themselves checked.
Status checkSymlinkTarget(const std::string& entry, std::string_view target, size_t depth) {
  auto bad = [&](std::string_view why) {
    return invalidArgument("zip entry '" + entry + "' is a symlink to '" + std::string(target) +
                           "', which " + std::string(why));
  };
  if (target.empty()) return bad("is empty");
  if (target.front() == '/') return bad("is absolute");
  if (target.size() >= PATH_MAX) return bad("is too long");
  if (target.find('\0') != std::string_view::npos) return bad("holds a NUL byte");
  size_t ups = 0;
  bool sawName = false;
  size_t i = 0;
  while (i <= target.size()) {
    size_t j = target.find('/', i);
    if (j == std::string_view::npos) j = target.size();
    std::string_view c = target.substr(i, j - i);
    if (c == "..") {
      if (sawName) return bad("uses '..' after a name (only leading '..' are allowed)");
      if (++ups > depth) return bad("leaves the code root");
    } else if (!c.empty() && c != ".") {
      sawName = true;
    }
    i = j + 1;
  }
  return Status::ok();
}

Result<PackIndex> PackIndex::parse(std::string_view bytes, size_t maxBytes) {
  const size_t n = bytes.size();
  if (n > maxBytes) {
    return corrupt(std::to_string(n) + " bytes, over the " + std::to_string(maxBytes) +
                   "-byte limit");
  }
  if (n < sizeof(PackIndexHeader) + kPackIndexTrailerBytes) {
    return corrupt("truncated (" + std::to_string(n) + " bytes)");
  }
  PackIndex ix;
  std::memcpy(&ix.header_, bytes.data(), sizeof(PackIndexHeader));
  const PackIndexHeader& h = ix.header_;
  if (std::memcmp(h.magic, kPackIndexMagic, sizeof h.magic) != 0) return corrupt("bad magic");
  if (h.version != kPackVersion) {
    return corrupt("unsupported version " + std::to_string(h.version));
  }
  const uint64_t expect = sizeof(PackIndexHeader) + uint64_t{h.entryCount} * sizeof(PackEntry) +
                          uint64_t{h.chunkCount} * sizeof(PackChunk) + h.stringBytes +
                          kPackIndexTrailerBytes;
  if (expect != n) {
    return corrupt("size " + std::to_string(n) + " does not match its counts (" +
                   std::to_string(expect) + ")");
  }
  uint8_t digest[32];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), n - kPackIndexTrailerBytes, digest);
  if (std::memcmp(digest, bytes.data() + n - kPackIndexTrailerBytes, 32) != 0) {
    return corrupt("checksum mismatch");
  }
  if (h.reserved != 0) return corrupt("reserved header field is not zero");
  if (h.maxChunkBytes == 0 || h.maxChunkBytes > kPackMaxChunkBytes) {
    return corrupt("maxChunkBytes " + std::to_string(h.maxChunkBytes) + " out of range");
  }
  if (h.entryCount == 0) return corrupt("no root entry");
  if (h.dataBytes < kPackDataHeaderBytes) return corrupt("data file smaller than its header");

  const char* p = bytes.data() + sizeof(PackIndexHeader);
  ix.entries_.resize(h.entryCount);
  std::memcpy(ix.entries_.data(), p, size_t{h.entryCount} * sizeof(PackEntry));
  p += size_t{h.entryCount} * sizeof(PackEntry);
  ix.chunks_.resize(h.chunkCount);
  std::memcpy(ix.chunks_.data(), p, size_t{h.chunkCount} * sizeof(PackChunk));
  p += size_t{h.chunkCount} * sizeof(PackChunk);
  ix.strings_.assign(p, h.stringBytes);

  for (uint32_t c = 0; c < h.chunkCount; ++c) {
    const PackChunk& k = ix.chunks_[c];
    const std::string at = "chunk " + std::to_string(c) + ": ";
    if (k.codec != static_cast<uint8_t>(ChunkCodec::kNone) &&
        k.codec != static_cast<uint8_t>(ChunkCodec::kZstd)) {
      return corrupt(at + "unknown codec " + std::to_string(k.codec));
    }
    for (uint8_t r : k.reserved) {
      if (r != 0) return corrupt(at + "reserved bytes are not zero");
    }
    if (k.rawLength == 0 || k.rawLength > h.maxChunkBytes) {
      return corrupt(at + "raw length " + std::to_string(k.rawLength) + " out of range");
    }
    // The writer keeps a compressed chunk only when it is smaller than the raw bytes.
    if (k.storedLength == 0 || k.storedLength > k.rawLength ||
        (k.codec == static_cast<uint8_t>(ChunkCodec::kNone) && k.storedLength != k.rawLength)) {
      return corrupt(at + "stored length " + std::to_string(k.storedLength) + " out of range");
    }
    if (k.dataOffset < kPackDataHeaderBytes || k.dataOffset > h.dataBytes ||
        k.storedLength > h.dataBytes - k.dataOffset) {
      return corrupt(at + "lies outside the data file");
    }
  }

  auto str = [&](uint32_t off, uint64_t len) -> std::optional<std::string_view> {
    if (off > ix.strings_.size() || len > ix.strings_.size() - off) return std::nullopt;
    return std::string_view(ix.strings_).substr(off, len);
  };

  const PackEntry& root = ix.entries_[0];
  if (!isDir(root) || root.parent != 0 || root.nameLength != 0 || root.size != 0 ||
      root.count != 0) {
    return corrupt("entry 0 is not an empty-named root directory");
  }
  ix.children_.resize(h.entryCount);
  ix.chunkFileOffset_.assign(h.chunkCount, 0);
  std::vector<uint32_t> depth(h.entryCount, 0);
  uint32_t nextChunk = 0;
  // Entries are in depth-first pre-order: each entry's parent is on the chain of directories
  // open at the previous entry. Extraction relies on it (one open directory per level).
  std::vector<uint32_t> open{0};
  for (uint32_t i = 1; i < h.entryCount; ++i) {
    const PackEntry& e = ix.entries_[i];
    const std::string at = "entry " + std::to_string(i) + ": ";
    if (e.parent >= i || !isDir(ix.entries_[e.parent])) {
      return corrupt(at + "parent is not an earlier directory");
    }
    while (!open.empty() && open.back() != e.parent) open.pop_back();
    if (open.empty()) return corrupt(at + "entries are not in depth-first order");
    if (isDir(e)) open.push_back(i);
    auto name = str(e.nameOffset, e.nameLength);
    if (!name || !validName(*name)) return corrupt(at + "bad name");
    depth[i] = depth[e.parent] + 1;
    const uint32_t type = e.mode & S_IFMT;
    const uint32_t perm = e.mode & ~S_IFMT;
    if (type == S_IFDIR) {
      if (perm != 0755 || e.size != 0 || e.first != 0 || e.count != 0) {
        return corrupt(at + "bad directory fields");
      }
    } else if (type == S_IFREG) {
      if (perm != 0644 && perm != 0755) return corrupt(at + "bad file mode");
      if (e.first != nextChunk || e.count > h.chunkCount - nextChunk) {
        return corrupt(at + "chunk list out of order or out of range");
      }
      uint64_t off = 0;
      for (uint32_t c = e.first; c < e.first + e.count; ++c) {
        ix.chunkFileOffset_[c] = off;
        off += ix.chunks_[c].rawLength;
      }
      if (off != e.size) return corrupt(at + "chunk lengths do not add up to the file size");
      nextChunk += e.count;
    } else if (type == S_IFLNK) {
      if (perm != 0777 || e.count != 0) return corrupt(at + "bad symlink fields");
      auto target = str(e.first, e.size);
      if (!target) return corrupt(at + "symlink target outside the string table");
      Status s = checkSymlinkTarget(std::string(*name), *target, depth[e.parent]);
      if (!s) return corrupt(at + s.message());
    } else {
      return corrupt(at + "unsupported file type");
    }
    ix.children_[e.parent].push_back(i);
  }
  if (nextChunk != h.chunkCount) return corrupt("chunks not owned by any file");
  for (auto& kids : ix.children_) {
    std::sort(kids.begin(), kids.end(),
              [&](uint32_t a, uint32_t b) { return ix.name(a) < ix.name(b); });
    for (size_t k = 1; k < kids.size(); ++k) {
      if (ix.name(kids[k - 1]) == ix.name(kids[k])) {
        return corrupt("duplicate name '" + std::string(ix.name(kids[k])) + "'");
      }
    }
  }
  return ix;
}

std::string PackIndex::dataSha256Hex() const { return toHex(header_.dataSha256, 32); }

std::string_view PackIndex::name(uint32_t i) const {
  const PackEntry& e = entries_[i];
  return std::string_view(strings_).substr(e.nameOffset, e.nameLength);
}

std::string_view PackIndex::symlinkTarget(uint32_t i) const {
  const PackEntry& e = entries_[i];
  return std::string_view(strings_).substr(e.first, e.size);
}

uint32_t PackIndex::lookup(uint32_t dir, std::string_view name) const {
  if (dir >= entries_.size()) return kNone;
  const auto& kids = children_[dir];
  auto it = std::lower_bound(kids.begin(), kids.end(), name,
                             [&](uint32_t a, std::string_view n) { return this->name(a) < n; });
  if (it == kids.end() || this->name(*it) != name) return kNone;
  return *it;
}

uint32_t PackIndex::lookupPath(std::string_view path) const {
  uint32_t cur = 0;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view c = path.substr(i, j - i);
    if (!c.empty() && c != ".") {
      cur = lookup(cur, c);
      if (cur == kNone) return kNone;
    }
    i = j + 1;
  }
  return cur;
}

std::string PackIndex::path(uint32_t i) const {
  std::string out;
  while (i != 0) {
    std::string part(name(i));
    out = out.empty() ? part : part + "/" + out;
    i = entries_[i].parent;
  }
  return out;
}

uint32_t PackIndex::chunkAt(uint32_t file, uint64_t offset) const {
  const PackEntry& e = entries_[file];
  auto begin = chunkFileOffset_.begin() + e.first;
  auto end = begin + e.count;
  auto it = std::upper_bound(begin, end, offset);
  return static_cast<uint32_t>((it - chunkFileOffset_.begin()) - 1);
}

}  // namespace stratus
