#pragma once
// A small mutation fuzzer shared by the parser harnesses (tests/fuzz/Fuzz*.cpp), built to run
// under AddressSanitizer + UndefinedBehaviorSanitizer. Each harness gives seeds (valid inputs),
// optional structure-aware mutations, and a function that feeds one input to the parser under
// test. The driver stacks random mutations on a seed, runs the input under an alarm (a hang
// aborts the process, naming the saved input), and enforces the contract of every parser here:
// an input is either accepted (the harness checks what it returned) or rejected with a
// core::Error whose message is one non-empty line. Any other exception (std::bad_alloc,
// nlohmann::json, c10::Error, ...) is a failure, and the sanitizers turn memory errors and
// undefined behaviour into failures. Failing inputs are saved so `--replay FILE` reproduces them.
//
//   FuzzX [--iterations N] [--seed S] [--timeout-ms T] [--save DIR] [--replay FILE]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/Error.h"

namespace lddpm::fuzz {

using Bytes = std::string;
using Rng = std::mt19937_64;

// Thrown by a harness when an accepted input breaks a property (e.g. a shard outside the store).
struct PropertyViolation : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Target {
  std::string name;
  std::vector<Bytes> seeds;
  // Structure-aware mutation (may be empty): changes `input` in place using `rng`.
  std::function<void(Bytes& input, Rng& rng)> mutate;
  // Feeds one input to the parser. Returns normally when the parser accepted it (after checking
  // what it returned: throw PropertyViolation otherwise); the parser's core::Error propagates.
  std::function<void(const Bytes& input)> run;
};

namespace detail {

inline std::string& savedInputPath() {
  static std::string path;
  return path;
}

inline void onAlarm(int) {
  static const char msg[] = "fuzz: FAIL: an input ran past --timeout-ms (hang); saved as ";
  (void)!::write(2, msg, sizeof msg - 1);
  (void)!::write(2, savedInputPath().c_str(), savedInputPath().size());
  (void)!::write(2, "\n", 1);
  ::_exit(3);
}

inline std::uint64_t interesting(Rng& rng, int bytes) {
  const std::uint64_t mask = bytes == 8 ? ~0ULL : (1ULL << (8 * bytes)) - 1;
  const std::uint64_t values[] = {0,
                                  1,
                                  mask,             // -1
                                  mask >> 1,        // max signed
                                  (mask >> 1) + 1,  // min signed
                                  0x7f,
                                  0x80,
                                  0xff,
                                  0x100,
                                  0x7fff,
                                  0x8000,
                                  0xffff,
                                  0x10000,
                                  0x7fffffff,
                                  0x80000000,
                                  rng() & mask};
  return values[rng() % std::size(values)] & mask;
}

inline void putLe(Bytes& b, std::size_t at, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes && at + i < b.size(); ++i) b[at + i] = static_cast<char>(v >> (8 * i));
}

// A float32 or float64 with a special value: NaN, ±Inf, 0, huge, tiny, denormal.
inline void putSpecialFloat(Bytes& b, std::size_t at, bool dbl, Rng& rng) {
  const double values[] = {std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity(),
                           0.0,
                           -0.0,
                           1e38,
                           -1e38,
                           1e-38,
                           1e-45,
                           1e308,
                           1.0,
                           -1.0};
  const double v = values[rng() % std::size(values)];
  if (dbl) {
    std::uint64_t bits;
    std::memcpy(&bits, &v, 8);
    putLe(b, at, bits, 8);
  } else {
    const auto f = static_cast<float>(v);
    std::uint32_t bits;
    std::memcpy(&bits, &f, 4);
    putLe(b, at, bits, 4);
  }
}

}  // namespace detail

// One generic byte-level mutation of `b` (which may come out empty).
inline void mutateBytes(Bytes& b, Rng& rng, const std::vector<Bytes>& seeds) {
  const auto pos = [&](std::size_t extra = 0) -> std::size_t {
    return b.size() > extra ? rng() % (b.size() - extra) : 0;
  };
  switch (rng() % 10) {
    case 0:  // flip one bit
      if (!b.empty()) b[pos()] ^= static_cast<char>(1u << (rng() % 8));
      break;
    case 1:  // an interesting integer of 1, 2, 4 or 8 bytes
    case 2: {
      const int bytes = 1 << (rng() % 4);
      if (b.size() >= static_cast<std::size_t>(bytes)) {
        detail::putLe(b, pos(bytes - 1), detail::interesting(rng, bytes), bytes);
      }
      break;
    }
    case 3:  // a special float or double
      if (b.size() >= 8) detail::putSpecialFloat(b, pos(7), rng() % 2 == 0, rng);
      break;
    case 4:  // truncate
      b.resize(b.empty() ? 0 : rng() % b.size());
      break;
    case 5: {  // delete a chunk
      if (b.empty()) break;
      const std::size_t at = pos();
      b.erase(at, 1 + rng() % std::min<std::size_t>(64, b.size() - at));
      break;
    }
    case 6: {  // duplicate a chunk
      if (b.empty()) break;
      const std::size_t at = pos();
      const std::string chunk = b.substr(at, 1 + rng() % 64);
      b.insert(pos(), chunk);
      break;
    }
    case 7: {  // insert random bytes
      std::string junk(1 + rng() % 16, '\0');
      for (char& c : junk) c = static_cast<char>(rng());
      b.insert(b.empty() ? 0 : pos(), junk);
      break;
    }
    case 8: {  // splice: our head, another seed's tail
      const Bytes& other = seeds[rng() % seeds.size()];
      if (other.empty()) break;
      b = b.substr(0, b.empty() ? 0 : pos()) + other.substr(rng() % other.size());
      break;
    }
    default:  // overwrite a random byte
      if (!b.empty()) b[pos()] = static_cast<char>(rng());
      break;
  }
}

inline bool oneLine(const std::string& message) {
  return !message.empty() && message.find('\n') == std::string::npos;
}

inline int fuzzMain(int argc, char** argv, Target target) {
  long iterations = 300, timeoutMs = 10000;
  std::uint64_t seed = 1;
  std::string saveDir = "/tmp", replay;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--iterations")
      iterations = std::stol(value);
    else if (key == "--seed")
      seed = std::stoull(value);
    else if (key == "--timeout-ms")
      timeoutMs = std::stol(value);
    else if (key == "--save")
      saveDir = value;
    else if (key == "--replay")
      replay = value;
    else {
      std::cerr << "fuzz " << target.name << ": unknown option " << key << "\n";
      return 2;
    }
  }
  detail::savedInputPath() =
      saveDir + "/fuzz-" + target.name + "-" + std::to_string(::getpid()) + ".input";
  std::signal(SIGALRM, detail::onAlarm);

  Rng rng(seed);
  long accepted = 0, rejected = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (long it = 0; it < (replay.empty() ? iterations : 1); ++it) {
    Bytes input;
    if (!replay.empty()) {
      std::ifstream in(replay, std::ios::binary);
      input.assign(std::istreambuf_iterator<char>(in), {});
    } else {
      input = target.seeds[rng() % target.seeds.size()];
      // The first pass feeds every seed unchanged: they must be accepted.
      if (it >= static_cast<long>(target.seeds.size())) {
        const int rounds = 1 + static_cast<int>(rng() % 4);
        for (int r = 0; r < rounds; ++r) {
          if (target.mutate && rng() % 2 == 0) {
            target.mutate(input, rng);
          } else {
            mutateBytes(input, rng, target.seeds);
          }
        }
      } else {
        input = target.seeds[static_cast<std::size_t>(it)];
      }
    }
    { std::ofstream(detail::savedInputPath(), std::ios::binary) << input; }
    std::string failure;
    ::alarm(static_cast<unsigned>((timeoutMs + 999) / 1000));
    try {
      target.run(input);
      ++accepted;
    } catch (const PropertyViolation& e) {
      failure = std::string("accepted input breaks a property: ") + e.what();
    } catch (const core::Error& e) {
      if (oneLine(e.what())) {
        ++rejected;
        if (it < static_cast<long>(target.seeds.size()) && replay.empty()) {
          failure = std::string("seed ") + std::to_string(it) + " rejected: " + e.what();
        }
      } else {
        failure = std::string("rejection is not a one-line message: '") + e.what() + "'";
      }
    } catch (const std::exception& e) {
      failure = std::string("escaped the project's errors (") + typeid(e).name() + "): " + e.what();
    }
    ::alarm(0);
    if (!failure.empty()) {
      std::cerr << "fuzz " << target.name << ": FAIL at input " << it << ": " << failure
                << "\n  input saved as " << detail::savedInputPath()
                << " (reproduce: --replay FILE)\n";
      return 1;
    }
  }
  std::remove(detail::savedInputPath().c_str());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "fuzz " << target.name << ": " << (accepted + rejected) << " inputs, " << accepted
            << " accepted, " << rejected << " rejected with a one-line message, 0 failures, "
            << seconds << " s\n";
  return 0;
}

}  // namespace lddpm::fuzz
