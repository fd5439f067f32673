#include "common/ids.h"

#include <openssl/sha.h>
#include <sys/random.h>

#include <cstdint>
#include <stdexcept>

namespace stratus {
namespace {
constexpr char kHex[] = "0123456789abcdef";

std::string toHex(const unsigned char* p, size_t n) {
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[p[i] >> 4];
    out[2 * i + 1] = kHex[p[i] & 15];
  }
  return out;
}
}  // namespace

std::string randomHex(size_t nbytes) {
  std::string buf(nbytes, '\0');
  size_t got = 0;
  while (got < nbytes) {
    ssize_t n = getrandom(buf.data() + got, nbytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::abort();  // the kernel CSPRNG failing is not recoverable
    }
    got += static_cast<size_t>(n);
  }
  return toHex(reinterpret_cast<const unsigned char*>(buf.data()), nbytes);
}

std::string newRequestId() {
  std::string h = randomHex(16);
  h[12] = '4';
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20, 12);
}

std::string sha256Hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return toHex(md, sizeof md);
}

}  // namespace stratus
