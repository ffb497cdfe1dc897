// observe/trace_text.hpp — text helpers shared by the trace summariser and its formatter
// (private to src/): names cut to a width on UTF-8 boundaries, widths in code points.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace parx::observe::detail {

// At most `n` code points of `s`, cut on a UTF-8 boundary, with "…" when something was cut; control
// characters become spaces so a hostile name cannot break the table.
inline std::string display(std::string_view s, std::size_t n = 48) {
  std::string out;
  std::size_t points = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const bool starts_point = (c & 0xC0) != 0x80;
    if (starts_point && ++points > n) {
      // Drop the last point kept to make room for the ellipsis.
      while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80)
        out.pop_back();
      if (!out.empty()) out.pop_back();
      return out + "…";
    }
    out += c < 0x20 || c == 0x7F ? ' ' : static_cast<char>(c);
  }
  return out;
}

// Display width in code points (every character parx prints is one column wide).
inline std::size_t width(std::string_view s) {
  std::size_t w = 0;
  for (char ch : s)
    w += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  return w;
}

}  // namespace parx::observe::detail
