// core/console.hpp — parx's console (private to src/): whole lines to the program's stdout and
// stderr that never tear a progress bar. On a terminal, the bars (drawn by the progress thread)
// are cleared before a line is written and drawn again after it.
//
// Thread-safety: every function may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace parx::detail {

// Writes whole lines to fd 1 or 2 without tearing a progress bar: the bar (on a terminal) is
// cleared first and drawn again after. `text` should end with '\n'. Safe from any thread.
void console_write(int fd, std::string_view text) noexcept;

// Whether stderr is a terminal (bars are drawn) or not (plain progress lines).
bool console_tty() noexcept;
// The progress bars' lines, drawn under everything else written through the console (one per
// live map, by id); an empty list erases them.
void console_set_bars(std::vector<std::pair<std::uint64_t, std::string>> bars) noexcept;
// A line printed above the bars (plain progress lines when stderr is not a terminal).
void console_print_above(std::string_view line) noexcept;
// A map ended: its bar `key` is replaced by `line`, printed for good above the others.
void console_end_bar(std::uint64_t key, std::string_view line) noexcept;

}  // namespace parx::detail
