#pragma once
// Text from files (names in a manifest, values in a config) quoted for a one-line error message:
// control characters escaped, very long text shortened, so a damaged or hostile input can neither
// break the message over lines nor flood the terminal.
#include <cstdio>
#include <string>

namespace lddpm::core {

inline std::string printable(const std::string& text, std::size_t maxChars = 120) {
  std::string out = "'";
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i == maxChars) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "'";
}

}  // namespace lddpm::core
