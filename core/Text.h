#pragma once
// Comma lists and the like: the one split and join of the project (option values such as
// --channels t1,t2,flair, HDF5 attributes holding name lists, lists in error messages).
#include <string>
#include <vector>

namespace lddpm::core {

// The items of `text` between each `sep`, empty ones included ("a,,b" -> a, "", b; "" -> none),
// so a caller that checks its items sees a stray separator; `skipEmpty` drops them instead.
inline std::vector<std::string> splitString(const std::string& text, char sep = ',',
                                            bool skipEmpty = false) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  std::string::size_type begin = 0;
  while (true) {
    const std::string::size_type end = text.find(sep, begin);
    std::string item = text.substr(begin, end == std::string::npos ? end : end - begin);
    if (!(skipEmpty && item.empty())) out.push_back(std::move(item));
    if (end == std::string::npos) return out;
    begin = end + 1;
  }
}

// `items` with `sep` between them: joinStrings({"a", "b"}, ", ") == "a, b".
inline std::string joinStrings(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

}  // namespace lddpm::core
