#pragma once
// The message of the core::Error a call throws, or "<no error>": tests then assert on what the
// message names (the file, option, parameter or step).
#include <functional>
#include <string>

#include "core/Error.h"

namespace lddpm::testutil {

inline std::string errorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const core::Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace lddpm::testutil
