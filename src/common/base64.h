// Standard base64 (RFC 4648, with padding), as used by code.zipFile and x-fc-log-result.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace stratus {

std::string base64Encode(std::string_view data);
// Rejects characters outside the alphabet (whitespace and newlines are skipped).
Result<std::string> base64Decode(std::string_view text);

}  // namespace stratus
