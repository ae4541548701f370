#pragma once
// Thin RAII over the serial HDF5 C API (Debian libhdf5-dev 1.10, thread-safe build): one owning
// handle type for every hid_t kind, a check macro whose message names the file/dataset and
// carries HDF5's own error-stack text, and the few attribute/dataset helpers the store needs.
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/Error.h"

namespace lddpm::data::h5 {

// Owns one hid_t and closes it with the matching H5?close on destruction. Move-only.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)), closer_(other.closer_) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      closer_ = other.closer_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Gives up ownership (for closing explicitly where the close status matters).
  hid_t release() { return std::exchange(id_, H5I_INVALID_HID); }
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// The innermost messages of HDF5's current error stack, joined by "; " (empty when none).
std::string errorStackMessage();

// Turns off HDF5's automatic printing of error stacks to stderr for the calling thread (HDF5
// keeps that setting per thread; idempotent): our exceptions carry the message instead, so a user
// sees one line, not forty.
void silenceAutoPrint();

// Throws core::IoError(path, "<what>: <HDF5 error stack>") — `path` names the file and the object
// inside it (e.g. "store/shard-00000.h5:/subjects/P1_T1/image").
[[noreturn]] void throwError(const std::string& path, const std::string& what);

// Wraps a returned id: throws (naming `path` and `what`) when it is negative.
Handle check(hid_t id, Handle::Closer closer, const std::string& path, const std::string& what);

Handle openFile(const std::string& path, bool readWrite = false);
Handle createFile(const std::string& path);  // truncates
Handle openGroup(hid_t loc, const std::string& name, const std::string& context);
Handle createGroup(hid_t loc, const std::string& name, const std::string& context);
Handle openDataset(hid_t loc, const std::string& name, const std::string& context,
                   hid_t accessPlist = H5P_DEFAULT);
bool exists(hid_t loc, const std::string& name);
std::vector<std::string> listGroup(hid_t group, const std::string& context);  // sorted names

// Scalar and 1-D attributes. Readers check type class and size and name the attribute on error.
void writeAttr(hid_t obj, const std::string& name, const std::string& value);
void writeAttr(hid_t obj, const std::string& name, std::int64_t value);
void writeAttr(hid_t obj, const std::string& name, double value);
void writeAttr(hid_t obj, const std::string& name, const std::vector<std::int64_t>& value);
void writeAttr(hid_t obj, const std::string& name, const std::vector<double>& value);
std::string readStringAttr(hid_t obj, const std::string& name, const std::string& context);
std::int64_t readIntAttr(hid_t obj, const std::string& name, const std::string& context);
double readDoubleAttr(hid_t obj, const std::string& name, const std::string& context);
std::vector<std::int64_t> readIntsAttr(hid_t obj, const std::string& name,
                                       const std::string& context);
std::vector<double> readDoublesAttr(hid_t obj, const std::string& name, const std::string& context);

// Dimensions of a dataset (rank checked by callers).
std::vector<hsize_t> datasetShape(hid_t dataset, const std::string& context);

}  // namespace lddpm::data::h5

// Evaluates an HDF5 call returning herr_t; on failure throws IoError naming `path` (file and
// object) with the call's text and HDF5's error stack message.
#define LDDPM_H5_CHECK(call, path)                                \
  do {                                                            \
    if ((call) < 0) ::lddpm::data::h5::throwError((path), #call); \
  } while (0)
