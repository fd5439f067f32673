// JSON: Boost.JSON, plus small typed accessors that return Status on wrong types instead of
// throwing. Include this rather than <boost/json.hpp> directly.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace stratus {

namespace json = boost::json;

// Parses text; malformed JSON is kInvalidArgument with the parser's message.
Result<json::value> parseJson(std::string_view text);

// Field accessors for objects: absent -> nullopt; present with the wrong type -> error naming
// the field ("memorySize must be an integer").
Result<std::optional<std::string>> getString(const json::object& o, std::string_view key);
Result<std::optional<int64_t>> getInt(const json::object& o, std::string_view key);
Result<std::optional<bool>> getBool(const json::object& o, std::string_view key);

}  // namespace stratus
