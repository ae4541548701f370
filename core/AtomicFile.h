#pragma once
// Atomic file and directory publication: write under a temporary name in the destination's
// folder, fsync, rename over the final name, fsync the folder. A crash at any point leaves either
// the old content or the new, never a torn file under the final name. Used for configs, metrics
// tables, manifests, HDF5 shards and checkpoint directories.
#include <fstream>
#include <string>

namespace lddpm::core {

// Writes `content` to `path` atomically. Throws IoError naming the path on any failure.
void writeFileAtomic(const std::string& path, const std::string& content);

// A file being written under a temporary name; commit() publishes it. Destroying an uncommitted
// writer removes the temporary, so an exception mid-write leaves the old file untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path, std::ios::openmode mode = std::ios::out);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  std::ofstream& stream() { return stream_; }
  const std::string& tempPath() const { return tempPath_; }
  const std::string& path() const { return path_; }
  void commit();  // flush, fsync, rename, fsync folder

 private:
  std::string path_;
  std::string tempPath_;
  std::ofstream stream_;
  bool committed_ = false;
};

// A unique temporary name beside `path` (same folder, so rename() is atomic): ".NAME.tmp-PID-N".
std::string temporarySibling(const std::string& path);

// fsync a file or folder by path. Throws IoError.
void fsyncPath(const std::string& path);

// rename(from, to) then fsync the destination folder; `to` must not be a non-empty directory.
void publish(const std::string& from, const std::string& to);

}  // namespace lddpm::core
