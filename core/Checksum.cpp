// XXH3-64 of files and buffers: see Checksum.h.
#include "core/Checksum.h"

#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "core/Error.h"

namespace lddpm::core {

std::uint64_t checksumFile(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (!file) throw IoError(path, std::string("cannot open for checksum: ") + std::strerror(errno));
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> state(XXH3_createState(),
                                                                        &XXH3_freeState);
  if (!state || XXH3_64bits_reset(state.get()) == XXH_ERROR) {
    throw IoError(path, "cannot initialise the XXH3 checksum state");
  }
  std::vector<unsigned char> buffer(1 << 20);  // 1 MiB reads: large enough to run at disk speed
  while (const std::size_t n = std::fread(buffer.data(), 1, buffer.size(), file.get())) {
    XXH3_64bits_update(state.get(), buffer.data(), n);
  }
  if (std::ferror(file.get())) throw IoError(path, "read error while computing checksum");
  return XXH3_64bits_digest(state.get());
}

std::uint64_t checksumBytes(const void* data, std::size_t size) { return XXH3_64bits(data, size); }

std::string checksumHex(std::uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

}  // namespace lddpm::core
