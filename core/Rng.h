#pragma once
// Seeding policy. Every random stream in lesion-ddpm is derived from the user's --seed and a
// tuple of integers naming what it is for (stream kind, epoch, step, sample, case...), never from
// the rank or the number of ranks. That is what makes a global batch, a crop or a sampled volume
// identical on 1 or N ranks and after a resume.
#include <ATen/core/Generator.h>

#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace lddpm::core {

// What a derived stream is for; the value is part of the derivation, so never renumber these.
enum class RngStream : std::uint64_t {
  ModelInit = 1,
  DataOrder = 2,
  PatchCentre = 3,
  Augment = 4,
  DiffusionTime = 5,
  DiffusionNoise = 6,
  Sampling = 7,
  Phantom = 8,
  Dropout = 9,
  Diagnostic = 10,  // lddpm evaluate denoising
  LesionTransplant = 11,
};

// SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// seed ⊕ stream ⊕ keys..., each folded through splitmix64 so nearby keys give unrelated seeds.
inline std::uint64_t deriveSeed(std::uint64_t seed, RngStream stream,
                                std::initializer_list<std::uint64_t> keys = {}) {
  std::uint64_t h = splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(stream)));
  for (std::uint64_t k : keys) h = splitmix64(h ^ splitmix64(k + 0x632be59bd9b4e019ULL));
  return h;
}

// FNV-1a of a name (a case id): a key for deriveSeed that, unlike std::hash, is the same in every
// build and standard library, so a case draws the same noise everywhere.
constexpr std::uint64_t nameKey(std::string_view name) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : name) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h;
}

// A fresh CPU generator seeded with `seed` (torch's Philox/MT engine, reproducible across runs).
at::Generator makeCpuGenerator(std::uint64_t seed);

// Seeds torch's default CPU generator (and CUDA's when present) — used only for model
// initialisation; everything per step uses derived generators.
void seedGlobal(std::uint64_t seed);

}  // namespace lddpm::core
