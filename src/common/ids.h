// Random identifiers (request ids, instance ids, API keys) from the kernel's CSPRNG.
// Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace stratus {

// n random bytes as 2n lowercase hex characters.
std::string randomHex(size_t nbytes);
// A UUID-v4 shaped id, as Function Compute uses for x-fc-request-id.
std::string newRequestId();
// SHA-256 of data, lowercase hex.
std::string sha256Hex(std::string_view data);

}  // namespace stratus
