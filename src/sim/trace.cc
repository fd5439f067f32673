#include "sim/trace.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <numbers>
#include <random>
#include <unordered_map>

namespace stratus::sim {
namespace {

std::vector<std::string_view> splitCsv(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      out.push_back(line.substr(start));
      return out;
    }
    out.push_back(line.substr(start, comma - start));
    start = comma + 1;
  }
}

// Reads lines, dropping a trailing CR; counts them for error messages.
class LineReader {
 public:
  LineReader(std::istream& in, std::string name) : in_(in), name_(std::move(name)) {}
  bool next(std::string& line) {
    if (!std::getline(in_, line)) return false;
    ++lineNo_;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }
  Status error(const std::string& what) const {
    return invalidArgument(name_ + ":" + std::to_string(lineNo_) + ": " + what);
  }

 private:
  std::istream& in_;
  std::string name_;
  int64_t lineNo_ = 0;
};

bool parseDouble(std::string_view s, double& out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && std::isfinite(out);
}

bool parseCount(std::string_view s, int64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec == std::errc() && p == s.data() + s.size()) return out >= 0;
  double d;  // some derived traces write counts as 3.0
  if (!parseDouble(s, d) || d < 0 || d != std::floor(d)) return false;
  out = static_cast<int64_t>(d);
  return true;
}

int roundUpMemory(double mb) {
  auto units = static_cast<int>(std::ceil(std::max(1.0, mb) / 128.0));
  return units * 128;
}

void sortInvocations(Trace& t) {
  std::stable_sort(t.invocations.begin(), t.invocations.end(),
                   [](const Invocation& a, const Invocation& b) { return a.startUs < b.startUs; });
}

Status expectHeader(LineReader& r, std::string& line, const std::vector<std::string>& prefix) {
  if (!r.next(line)) return r.error("empty file, expected a header");
  auto cols = splitCsv(line);
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (i >= cols.size() || cols[i] != prefix[i]) {
      return r.error("expected header column " + std::to_string(i + 1) + " '" + prefix[i] + "'");
    }
  }
  return Status::ok();
}

}  // namespace

Result<Trace> parseAzure2021(std::istream& in, const std::string& name,
                             const TraceOptions& options) {
  LineReader r(in, name);
  std::string line;
  if (Status s = expectHeader(r, line, {"app", "func", "end_timestamp", "duration"}); !s.isOk()) {
    return s;
  }
  Trace t;
  std::unordered_map<std::string, int> apps;
  std::unordered_map<std::string, int> funcs;
  while (r.next(line)) {
    if (line.empty()) continue;
    auto cols = splitCsv(line);
    if (cols.size() != 4) {
      return r.error("expected 4 columns (app,func,end_timestamp,duration), got " +
                     std::to_string(cols.size()));
    }
    if (cols[0].empty() || cols[1].empty()) return r.error("empty app or func");
    double end, duration;
    if (!parseDouble(cols[2], end) || end < 0) {
      return r.error("end_timestamp '" + std::string(cols[2]) + "' is not a non-negative number");
    }
    if (!parseDouble(cols[3], duration) || duration < 0) {
      return r.error("duration '" + std::string(cols[3]) + "' is not a non-negative number");
    }
    auto [app, newApp] = apps.try_emplace(std::string(cols[0]), static_cast<int>(apps.size()));
    std::string fkey = std::string(cols[0]) + "," + std::string(cols[1]);
    auto [fn, newFn] = funcs.try_emplace(fkey, static_cast<int>(t.functions.size()));
    if (newFn) {
      SimFunction f;
      f.tenant = "a" + std::to_string(app->second);
      f.key = f.tenant + "/f" + std::to_string(fn->second);
      f.memoryMb = options.defaultMemoryMb;
      f.concurrency = options.concurrency;
      t.functions.push_back(std::move(f));
    }
    Invocation inv;
    auto endUs = static_cast<int64_t>(std::llround(end * 1e6));
    inv.durationUs = static_cast<int64_t>(std::llround(duration * 1e6));
    inv.startUs = std::max<int64_t>(0, endUs - inv.durationUs);
    inv.function = fn->second;
    t.invocations.push_back(inv);
  }
  sortInvocations(t);
  return t;
}

namespace {

struct DurationDist {
  // (quantile, ms) points of the piecewise-linear inverse CDF.
  std::vector<std::pair<double, double>> points;
  double sampleMs(double u) const {
    for (size_t i = 1; i < points.size(); ++i) {
      if (u <= points[i].first) {
        auto [q0, v0] = points[i - 1];
        auto [q1, v1] = points[i];
        return q1 > q0 ? v0 + (v1 - v0) * (u - q0) / (q1 - q0) : v1;
      }
    }
    return points.back().second;
  }
};

std::string hashKey(std::string_view owner, std::string_view app, std::string_view fn) {
  std::string k;
  k.reserve(owner.size() + app.size() + fn.size() + 2);
  k.append(owner).append(",").append(app).append(",").append(fn);
  return k;
}

}  // namespace

Result<Trace> parseAzure2019(std::istream& invocations, const std::string& name,
                             std::istream* durations, const std::string& durationsName,
                             std::istream* memory, const std::string& memoryName,
                             const TraceOptions& options) {
  // Durations: key -> distribution.
  std::unordered_map<std::string, DurationDist> dists;
  std::string line;
  if (durations != nullptr) {
    LineReader r(*durations, durationsName);
    if (Status s = expectHeader(r, line, {"HashOwner", "HashApp", "HashFunction", "Average"});
        !s.isOk()) {
      return s;
    }
    auto header = splitCsv(line);
    static const std::pair<const char*, double> kPct[] = {
        {"percentile_Average_0", 0.0},   {"percentile_Average_1", 0.01},
        {"percentile_Average_25", 0.25}, {"percentile_Average_50", 0.5},
        {"percentile_Average_75", 0.75}, {"percentile_Average_99", 0.99},
        {"percentile_Average_100", 1.0}};
    std::vector<std::pair<size_t, double>> pctCols;
    for (auto [col, q] : kPct) {
      auto it = std::find(header.begin(), header.end(), col);
      if (it != header.end()) pctCols.push_back({static_cast<size_t>(it - header.begin()), q});
    }
    while (r.next(line)) {
      if (line.empty()) continue;
      auto cols = splitCsv(line);
      if (cols.size() != header.size()) {
        return r.error("expected " + std::to_string(header.size()) + " columns, got " +
                       std::to_string(cols.size()));
      }
      DurationDist d;
      double avg;
      if (!parseDouble(cols[3], avg) || avg < 0) {
        return r.error("Average '" + std::string(cols[3]) + "' is not a non-negative number");
      }
      for (auto [col, q] : pctCols) {
        double v;
        if (!parseDouble(cols[col], v) || v < 0) {
          return r.error("column " + std::string(header[col]) + " '" + std::string(cols[col]) +
                         "' is not a non-negative number");
        }
        d.points.push_back({q, v});
      }
      if (d.points.size() < 2) d.points = {{0.0, avg}, {1.0, avg}};
      // Percentile columns must not decrease; sort defensively by value within the quantiles.
      for (size_t i = 1; i < d.points.size(); ++i) {
        d.points[i].second = std::max(d.points[i].second, d.points[i - 1].second);
      }
      dists[hashKey(cols[0], cols[1], cols[2])] = std::move(d);
    }
  }
  // Memory: per function if the file has HashFunction, else per app.
  std::unordered_map<std::string, int> mem;
  bool memPerFunction = false;
  if (memory != nullptr) {
    LineReader r(*memory, memoryName);
    if (Status s = expectHeader(r, line, {"HashOwner", "HashApp"}); !s.isOk()) return s;
    auto header = splitCsv(line);
    memPerFunction = header.size() > 2 && header[2] == "HashFunction";
    auto it = std::find(header.begin(), header.end(), "AverageAllocatedMb");
    if (it == header.end()) return r.error("no AverageAllocatedMb column");
    size_t col = static_cast<size_t>(it - header.begin());
    while (r.next(line)) {
      if (line.empty()) continue;
      auto cols = splitCsv(line);
      if (cols.size() != header.size()) {
        return r.error("expected " + std::to_string(header.size()) + " columns, got " +
                       std::to_string(cols.size()));
      }
      double mb;
      if (!parseDouble(cols[col], mb) || mb < 0) {
        return r.error("AverageAllocatedMb '" + std::string(cols[col]) +
                       "' is not a non-negative number");
      }
      mem[memPerFunction ? hashKey(cols[0], cols[1], cols[2]) : hashKey(cols[0], cols[1], "")] =
          roundUpMemory(mb);
    }
  }

  LineReader r(invocations, name);
  if (Status s = expectHeader(r, line, {"HashOwner", "HashApp", "HashFunction", "Trigger", "1"});
      !s.isOk()) {
    return s;
  }
  const size_t columns = splitCsv(line).size();
  const int minutes = std::min<int>(static_cast<int>(columns) - 4, options.maxMinutes);
  Trace t;
  std::unordered_map<std::string, int> owners;
  std::mt19937_64 rng(options.seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  while (r.next(line)) {
    if (line.empty()) continue;
    auto cols = splitCsv(line);
    if (cols.size() != columns) {
      return r.error("expected " + std::to_string(columns) + " columns, got " +
                     std::to_string(cols.size()));
    }
    if (cols[0].empty() || cols[1].empty() || cols[2].empty()) {
      return r.error("empty HashOwner, HashApp or HashFunction");
    }
    auto [owner, _] = owners.try_emplace(std::string(cols[0]), static_cast<int>(owners.size()));
    int fi = static_cast<int>(t.functions.size());
    SimFunction f;
    f.tenant = "o" + std::to_string(owner->second);
    f.key = f.tenant + "/f" + std::to_string(fi);
    f.concurrency = options.concurrency;
    std::string key = hashKey(cols[0], cols[1], cols[2]);
    auto m = mem.find(memPerFunction ? key : hashKey(cols[0], cols[1], ""));
    f.memoryMb = m != mem.end() ? m->second : options.defaultMemoryMb;
    t.functions.push_back(std::move(f));
    auto d = dists.find(key);
    for (int minute = 0; minute < minutes; ++minute) {
      int64_t count;
      if (!parseCount(cols[4 + minute], count)) {
        return r.error("minute " + std::to_string(minute + 1) + " count '" +
                       std::string(cols[4 + minute]) + "' is not a non-negative integer");
      }
      for (int64_t k = 0; k < count; ++k) {
        Invocation inv;
        inv.function = fi;
        inv.startUs = static_cast<int64_t>((minute + unit(rng)) * 60e6);
        double ms = d != dists.end() ? d->second.sampleMs(unit(rng)) : 1000.0;
        inv.durationUs = static_cast<int64_t>(ms * 1e3);
        t.invocations.push_back(inv);
      }
    }
  }
  sortInvocations(t);
  return t;
}

Result<Trace> loadTrace(const std::filesystem::path& file, const std::string& format,
                        const TraceOptions& options, const std::filesystem::path& durations,
                        const std::filesystem::path& memory) {
  std::ifstream in(file);
  if (!in) return Status::fromErrno(errno, "open trace " + file.string());
  if (format == "azure2021") return parseAzure2021(in, file.string(), options);
  if (format != "azure2019") {
    return invalidArgument("unknown trace format '" + format + "' (azure2021 | azure2019)");
  }
  auto sibling = [&](const std::filesystem::path& given,
                     const std::string& word) -> std::filesystem::path {
    if (!given.empty()) return given;
    std::string fname = file.filename().string();
    size_t pos = fname.find("invocations");
    if (pos == std::string::npos) return {};
    fname.replace(pos, std::string("invocations").size(), word);
    auto p = file.parent_path() / fname;
    return std::filesystem::exists(p) ? p : std::filesystem::path{};
  };
  auto dpath = sibling(durations, "durations");
  auto mpath = sibling(memory, "memory");
  std::ifstream din, min;
  if (!dpath.empty()) {
    din.open(dpath);
    if (!din) return Status::fromErrno(errno, "open durations " + dpath.string());
  }
  if (!mpath.empty()) {
    min.open(mpath);
    if (!min) return Status::fromErrno(errno, "open memory " + mpath.string());
  }
  return parseAzure2019(in, file.string(), dpath.empty() ? nullptr : &din, dpath.string(),
                        mpath.empty() ? nullptr : &min, mpath.string(), options);
}

Result<SyntheticSpec> parseSyntheticSpec(const std::string& text) {
  SyntheticSpec s;
  size_t colon = text.find(':');
  s.kind = text.substr(0, colon);
  static const char* kKinds[] = {"poisson", "uniform", "onoff", "diurnal", "clumped"};
  if (std::find(std::begin(kKinds), std::end(kKinds), s.kind) == std::end(kKinds)) {
    return invalidArgument("unknown synthetic kind '" + s.kind +
                           "' (poisson | uniform | onoff | diurnal | clumped)");
  }
  if (colon == std::string::npos) return s;
  for (auto kv : splitCsv(std::string_view(text).substr(colon + 1))) {
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) {
      return invalidArgument("synthetic option '" + std::string(kv) + "' is not key=value");
    }
    std::string key(kv.substr(0, eq));
    double v;
    if (!parseDouble(kv.substr(eq + 1), v) || v < 0) {
      return invalidArgument("synthetic option " + key + " needs a non-negative number");
    }
    if (key == "functions") {
      s.functions = std::max(1, static_cast<int>(v));
    } else if (key == "tenants") {
      s.tenants = std::max(1, static_cast<int>(v));
    } else if (key == "rate") {
      s.rate = v;
    } else if (key == "seconds") {
      s.seconds = v;
    } else if (key == "exec-ms") {
      s.execMs = v;
    } else if (key == "exec-exp") {
      s.execExponential = v != 0;
    } else if (key == "memory-mb") {
      s.memoryMb = static_cast<int>(v);
    } else if (key == "concurrency") {
      s.concurrency = std::max(1, static_cast<int>(v));
    } else if (key == "on") {
      s.onSeconds = v;
    } else if (key == "off") {
      s.offSeconds = v;
    } else if (key == "period") {
      s.periodSeconds = v;
    } else if (key == "amplitude") {
      s.amplitude = std::min(1.0, v);
    } else if (key == "clump") {
      s.clump = std::max(1, static_cast<int>(v));
    } else if (key == "clump-ms") {
      s.clumpMs = v;
    } else if (key == "seed") {
      s.seed = static_cast<uint64_t>(v);
    } else if (key == "warmup") {
      s.warmup = v != 0;
    } else {
      return invalidArgument("unknown synthetic option '" + key + "'");
    }
  }
  if (s.rate <= 0) return invalidArgument("synthetic rate must be > 0");
  return s;
}

Trace generateSynthetic(const SyntheticSpec& spec) {
  Trace t;
  std::mt19937_64 rng(spec.seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double endSec = spec.seconds;
  auto exec = [&]() -> int64_t {
    double ms = spec.execMs;
    if (spec.execExponential) ms = -std::log(1.0 - unit(rng)) * spec.execMs;
    return static_cast<int64_t>(ms * 1e3);
  };
  auto add = [&](int f, double sec) {
    if (sec < 0 || sec >= endSec) return;
    t.invocations.push_back(Invocation{static_cast<int64_t>(sec * 1e6), exec(), f});
  };
  auto expo = [&](double rate) { return -std::log(1.0 - unit(rng)) / rate; };
  for (int f = 0; f < spec.functions; ++f) {
    SimFunction fn;
    fn.tenant = "t" + std::to_string(f % spec.tenants);
    fn.key = fn.tenant + "/f" + std::to_string(f);
    fn.memoryMb = spec.memoryMb;
    fn.concurrency = spec.concurrency;
    t.functions.push_back(fn);
    if (spec.kind == "poisson") {
      for (double s = expo(spec.rate); s < endSec; s += expo(spec.rate)) add(f, s);
    } else if (spec.kind == "uniform") {
      double gap = 1.0 / spec.rate;
      double phase = gap * f / spec.functions;  // staggered so functions do not align
      for (int64_t k = 0; phase + k * gap < endSec; ++k) add(f, phase + k * gap);
    } else if (spec.kind == "onoff") {
      double cycle = spec.onSeconds + spec.offSeconds;
      double onRate = spec.rate * cycle / std::max(1e-9, spec.onSeconds);
      double phase = unit(rng) * cycle;
      for (double s = expo(onRate); s < endSec + phase; s += expo(onRate)) {
        double inCycle = std::fmod(s, cycle);
        if (inCycle < spec.onSeconds) {
          add(f, s - phase);
        } else {
          s += cycle - inCycle;  // skip the off period
        }
      }
    } else if (spec.kind == "diurnal") {
      // Thinning of a Poisson process at the peak rate.
      double peak = spec.rate * (1 + spec.amplitude);
      for (double s = expo(peak); s < endSec; s += expo(peak)) {
        double lambda =
            spec.rate *
            (1 + spec.amplitude * std::sin(2 * std::numbers::pi * s / spec.periodSeconds));
        if (unit(rng) * peak < lambda) add(f, s);
      }
    } else {  // clumped
      double gap = spec.clump / spec.rate;
      double phase = gap * f / spec.functions;
      for (int64_t c = 0; phase + c * gap < endSec; ++c) {
        for (int k = 0; k < spec.clump; ++k) {
          add(f, phase + c * gap + unit(rng) * spec.clumpMs / 1e3);
        }
      }
    }
  }
  if (spec.warmup) {
    for (auto& inv : t.invocations) inv.startUs += 1'000'000;
    for (int f = 0; f < spec.functions; ++f) t.invocations.push_back(Invocation{0, exec(), f});
  }
  sortInvocations(t);
  return t;
}

}  // namespace stratus::sim
