#include "sandbox/tenant_ids.h"

#include <fcntl.h>
#include <unistd.h>

#include <sstream>

#include "common/fs.h"
#include "common/unique_fd.h"

namespace stratus {

Result<std::unique_ptr<TenantIdMap>> TenantIdMap::open(std::filesystem::path file,
                                                       uint32_t firstHostId) {
  if (firstHostId == 0 || firstHostId % kRangeSize != 0) {
    return invalidArgument("first host id must be a non-zero multiple of 65536");
  }
  std::unique_ptr<TenantIdMap> m(new TenantIdMap(file, firstHostId));
  if (file.empty()) return m;
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return m;
  ASSIGN_OR_RETURN(std::string text, readFile(file));
  if (size_t end = text.rfind('\n') + 1; end != text.size()) {
    // A line torn by a crash was never handed out: drop it, so the next append starts clean.
    text.resize(end);
    if (::truncate(file.c_str(), static_cast<off_t>(end)) != 0) {
      return Status::fromErrno(errno, "truncate the torn line of " + file.string());
    }
  }
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t sp = line.find(' ');
    if (sp == std::string::npos)
      return invalidArgument("bad line in " + file.string() + ": " + line);
    uint64_t idx = 0;
    try {
      idx = std::stoull(line.substr(0, sp));
    } catch (...) {
      return invalidArgument("bad line in " + file.string() + ": " + line);
    }
    if (idx != m->index_.size()) {
      return invalidArgument("tenant id file " + file.string() + " is out of order at: " + line);
    }
    m->index_.emplace(line.substr(sp + 1), static_cast<uint32_t>(idx));
  }
  return m;
}

Result<uint32_t> TenantIdMap::hostIdBase(const std::string& tenant) {
  if (tenant.find('\n') != std::string::npos) return invalidArgument("tenant name with a newline");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(tenant);
  uint32_t idx;
  if (it != index_.end()) {
    idx = it->second;
  } else {
    idx = static_cast<uint32_t>(index_.size());
    if (uint64_t{first_} + (uint64_t{idx} + 1) * kRangeSize > 0xFFFFFFFFull) {
      return Status(Code::kResourceExhausted, "no host uid range left for tenant " + tenant);
    }
    if (!file_.empty()) {
      UniqueFd fd(::open(file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
      if (!fd) return Status::fromErrno(errno, "open " + file_.string());
      std::string line = std::to_string(idx) + " " + tenant + "\n";
      if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
          ::fsync(fd.get()) != 0) {
        return Status::fromErrno(errno, "append to " + file_.string());
      }
    }
    index_.emplace(tenant, idx);
  }
  return first_ + idx * kRangeSize;
}

}  // namespace stratus
