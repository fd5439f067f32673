// Runs a libFuzzer target without libFuzzer (g++ builds, and CI without clang): every file under
// the directories or files given is passed to LLVMFuzzerTestOneInput once. With
// `--mutate N SEED`, each input is also fed N deterministic mutations (truncations, byte flips,
// and for pack inputs re-sealed index flips that get past the checksum), so the structural
// checks behind the checksum are exercised too. Exit 0 when nothing crashed.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "codepack/pack_format.h"
#include "codepack/sha256.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size);

namespace {

void run(const std::string& s) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// If s is a pack input ([u32 len][index][data]) whose index trailer checks out, returns the
// index range so mutations can be re-sealed.
bool packIndexRange(const std::string& s, size_t& begin, size_t& len) {
  if (s.size() < 4) return false;
  uint32_t n;
  std::memcpy(&n, s.data(), 4);
  if (n < stratus::kPackIndexTrailerBytes || n > s.size() - 4) return false;
  begin = 4;
  len = n;
  auto h =
      stratus::Sha256Hasher::of(std::string_view(s).substr(4, n - stratus::kPackIndexTrailerBytes));
  return std::memcmp(h.data(), s.data() + 4 + n - stratus::kPackIndexTrailerBytes, 32) == 0;
}

void reseal(std::string& s, size_t begin, size_t len) {
  auto h = stratus::Sha256Hasher::of(
      std::string_view(s).substr(begin, len - stratus::kPackIndexTrailerBytes));
  std::memcpy(s.data() + begin + len - stratus::kPackIndexTrailerBytes, h.data(), 32);
}

}  // namespace

int main(int argc, char** argv) {
  int mutations = 0;
  uint64_t seed = 1;
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mutate" && i + 2 < argc) {
      mutations = std::atoi(argv[++i]);
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::filesystem::is_directory(a)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(a)) {
        if (e.is_regular_file()) inputs.push_back(e.path());
      }
    } else {
      inputs.emplace_back(a);
    }
  }
  std::mt19937_64 rng(seed);
  size_t runs = 0;
  for (const auto& p : inputs) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string s = ss.str();
    run(s);
    ++runs;
    size_t ib = 0, il = 0;
    const bool pack = packIndexRange(s, ib, il);
    for (int m = 0; m < mutations && !s.empty(); ++m) {
      std::string t = s;
      switch (rng() % 4) {
        case 0:
          t.resize(rng() % t.size());
          break;
        case 1:
          t[rng() % t.size()] ^= static_cast<char>(1 << (rng() % 8));
          break;
        case 2: {
          size_t at = rng() % t.size();
          uint32_t v = static_cast<uint32_t>(rng());
          std::memcpy(t.data() + at, &v, std::min<size_t>(4, t.size() - at));
          break;
        }
        default:
          if (pack && il > stratus::kPackIndexTrailerBytes) {
            size_t body = il - stratus::kPackIndexTrailerBytes;
            for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) {
              t[ib + rng() % body] ^= static_cast<char>(1 + rng() % 255);
            }
            reseal(t, ib, il);
          } else {
            t.insert(rng() % t.size(), std::string(1 + rng() % 64, static_cast<char>(rng())));
          }
      }
      run(t);
      ++runs;
    }
  }
  std::printf("replayed %zu inputs (%zu files)\n", runs, inputs.size());
  return inputs.empty() ? 1 : 0;
}
