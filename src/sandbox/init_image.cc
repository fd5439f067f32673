// The stratus-sandbox-init binary, embedded into the library (so that no install path has to be
// found at run time); process_sandbox.cc copies it into a sealed memfd once per backend.
#include "sandbox/init_image.h"

#ifndef STRATUS_SANDBOX_INIT_PATH
#error "STRATUS_SANDBOX_INIT_PATH must name the built stratus-sandbox-init binary"
#endif

asm(".section .rodata\n"
    ".balign 16\n"
    ".global stratusSandboxInitImage\n"
    "stratusSandboxInitImage:\n"
    ".incbin \"" STRATUS_SANDBOX_INIT_PATH
    "\"\n"
    ".global stratusSandboxInitImageEnd\n"
    "stratusSandboxInitImageEnd:\n"
    ".previous\n");

extern "C" const char stratusSandboxInitImage[];
extern "C" const char stratusSandboxInitImageEnd[];

namespace stratus::sandbox_internal {

std::string_view sandboxInitImage() {
  return {stratusSandboxInitImage,
          static_cast<size_t>(stratusSandboxInitImageEnd - stratusSandboxInitImage)};
}

}  // namespace stratus::sandbox_internal
