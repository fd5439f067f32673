// Internal to the sandbox component: the bytes of the static stratus-sandbox-init binary
// (init_main.cc), embedded at build time.
#pragma once

#include <string_view>

namespace stratus::sandbox_internal {

std::string_view sandboxInitImage();

}  // namespace stratus::sandbox_internal
