// SPDX-License-Identifier: MIT
// Output helpers of the CLI: grouped integers, aligned text tables, progress lines on stderr.
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace shareformer::cli {

/// 109482240 -> "109,482,240".
inline std::string grouped(std::int64_t value) {
  const std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

/// Bytes as MiB.
inline double mib(std::int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

/// Two decimals from 1 up, three significant digits below: 341.99, 1.50, 0.0312, 0.000459.
inline std::string decimal(double value) {
  return value >= 1.0 || value == 0.0 ? fmt::format("{:.2f}", value) : fmt::format("{:.3g}", value);
}

/// A text table: the first column left-aligned, the others right-aligned, two spaces apart.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}

  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

  std::string str() const {
    std::vector<std::size_t> width;
    for (const auto& row : rows_) {
      width.resize(std::max(width.size(), row.size()), 0);
      for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    }
    std::string out;
    for (const auto& row : rows_) {
      std::string line;
      for (std::size_t i = 0; i < row.size(); ++i) {
        if (i == 0)
          line += fmt::format("{:<{}}", row[i], width[i]);
        else
          line += fmt::format("  {:>{}}", row[i], width[i]);
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + '\n';
    }
    return out;
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

/// Progress on stderr, shown only once a task has run for more than a second: rewritten in place
/// on a terminal, one line at most every five seconds otherwise (logs stay short).
class Progress {
 public:
  Progress() : start_(Clock::now()), last_(start_), tty_(::isatty(STDERR_FILENO) == 1) {}
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress() { finish(); }

  void update(const std::string& message) {
    const auto now = Clock::now();
    if (now - start_ < std::chrono::seconds(1)) return;
    if (!tty_ && shown_ && now - last_ < std::chrono::seconds(5)) return;
    last_ = now;
    shown_ = true;
    if (tty_)
      std::fprintf(stderr, "\r\033[K%s", message.c_str());
    else
      std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
  }

  /// Clears the progress line of a terminal.
  void finish() {
    if (tty_ && shown_) std::fprintf(stderr, "\r\033[K");
    shown_ = false;
  }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point start_;
  Clock::time_point last_;
  bool tty_;
  bool shown_ = false;
};

}  // namespace shareformer::cli
