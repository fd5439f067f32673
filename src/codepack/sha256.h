// Incremental SHA-256 (OpenSSL EVP), for hashing files and streams without holding them.
// One hasher per thread; move-only.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string_view>

#include "codepack/pack_format.h"

namespace stratus {

class Sha256Hasher {
 public:
  Sha256Hasher() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
  void update(std::string_view data) { EVP_DigestUpdate(ctx_.get(), data.data(), data.size()); }
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx_.get(), p, n); }
  Sha256 finish() {
    Sha256 out{};
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), out.data(), &len);
    return out;
  }
  static Sha256 of(std::string_view data) {
    Sha256Hasher h;
    h.update(data);
    return h.finish();
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

}  // namespace stratus
