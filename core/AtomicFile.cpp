#include "core/AtomicFile.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/Error.h"

namespace lddpm::core {
namespace fs = std::filesystem;

std::string temporarySibling(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  return (dir / strCat(".", p.filename().string(), ".tmp-", ::getpid(), "-", counter++)).string();
}

void fsyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(path, strCat("cannot open for fsync: ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some filesystems refuse fsync on directories (EINVAL); the rename is still atomic there.
  if (rc != 0 && err != EINVAL) throw IoError(path, strCat("fsync failed: ", std::strerror(err)));
}

void publish(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    throw IoError(to, strCat("cannot rename '", from, "' into place: ", std::strerror(errno)));
  }
  const fs::path parent = fs::path(to).has_parent_path() ? fs::path(to).parent_path() : ".";
  fsyncPath(parent.string());
}

AtomicFileWriter::AtomicFileWriter(std::string path, std::ios::openmode mode)
    : path_(std::move(path)), tempPath_(temporarySibling(path_)) {
  stream_.open(tempPath_, mode | std::ios::out | std::ios::trunc);
  if (!stream_)
    throw IoError(path_, strCat("cannot create '", tempPath_, "': ", std::strerror(errno)));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) {
    stream_.close();
    std::remove(tempPath_.c_str());
  }
}

void AtomicFileWriter::commit() {
  errno = 0;
  stream_.flush();
  if (!stream_) {
    // The stream keeps no error code; errno from the failed write() says why (ENOSPC, EFBIG,
    // EROFS, EIO) when the library left it set.
    const int err = errno;
    throw IoError(path_, strCat("write to '", tempPath_,
                                "' failed: ", err != 0 ? std::strerror(err) : "disk full?"));
  }
  stream_.close();
  if (!stream_) throw IoError(path_, strCat("closing '", tempPath_, "' failed (disk full?)"));
  fsyncPath(tempPath_);
  publish(tempPath_, path_);
  committed_ = true;
}

void writeFileAtomic(const std::string& path, const std::string& content) {
  AtomicFileWriter writer(path, std::ios::binary);
  errno = 0;
  writer.stream().write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!writer.stream()) {
    const int err = errno;
    throw IoError(path, strCat("write to '", writer.tempPath(),
                               "' failed: ", err != 0 ? std::strerror(err) : "disk full?"));
  }
  writer.commit();
}

}  // namespace lddpm::core
