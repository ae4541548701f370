#pragma once
// File checksums: XXH3-64 from Debian's libxxhash (streaming API), for the store manifest's shards
// and every file of a checkpoint. Shards are hundreds of MB; XXH3 hashes at memory speed, so
// verifying costs about as much as reading once, and a well-kept library beats a hand-written hash
// (docs/store.md). In core/ because both data/ (stores) and core/ (checkpoints) verify files.
#include <cstdint>
#include <string>

namespace lddpm::core {

// XXH3-64 (seed 0) of the whole file; IoError naming the file when it cannot be read.
std::uint64_t checksumFile(const std::string& path);

// XXH3-64 of a byte range (used by tests to cross-check checksumFile).
std::uint64_t checksumBytes(const void* data, std::size_t size);

// 16 lowercase hex digits, the form stored in manifest.json.
std::string checksumHex(std::uint64_t value);

}  // namespace lddpm::core
