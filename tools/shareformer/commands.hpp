// SPDX-License-Identifier: MIT
// The CLI's commands: each adds its subcommand to the app and runs it once parsed.
#pragma once

#include <CLI/CLI.hpp>
#include <stdexcept>
#include <string>

namespace shareformer::cli {

/// The --seq-len to use: `requested`, or when 0 the default 128 capped at `max_positions`.
inline long long default_seq_len(long long requested, long long max_positions) {
  return requested > 0 ? requested : (max_positions < 128 ? max_positions : 128);
}

/// Adds --weights float|bf16 to a subcommand (Linear::use_bf16_weights when bf16).
inline void add_weights_option(CLI::App* sub, std::string& weights, std::size_t bf16_max_rows) {
  sub->add_option("--weights", weights,
                  "Weight storage: float, or bf16 (every Linear's weight rounded to bfloat16; "
                  "products over at most " + std::to_string(bf16_max_rows) +
                      " tokens stream the bfloat16 copy, half the bytes)")
      ->check(CLI::IsMember({"float", "bf16"}))
      ->capture_default_str();
}

/// A command line that parses but makes no sense (exit status 2, like a CLI11 parse error).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The subcommands. `add` registers the subcommand and its options on `app` (the options bind to
/// the command object, which must outlive parsing); `run` executes it and returns the exit status.
/// Both throw shareformer::Error for a bad model or input and UsageError for a bad command line.
struct InfoCommand {
  std::string model;
  long long batch = 1;
  long long seq_len = 0;  // 0: 128, or max_position_embeddings when smaller
  bool json = false;

  CLI::App* add(CLI::App& app);
  int run() const;
};

struct BenchCommand {
  std::string model;
  std::string preset;
  long long batch = 1;
  long long seq_len = 0;  // 0: 128, or max_position_embeddings when smaller
  int threads = 0;
  std::string policy = "each";
  int iterations = 20;
  int warmup = 2;
  unsigned long long seed = 42;
  double peak_gflops = 0.0;
  std::string weights = "float";  // float or bf16 (Stack::use_bf16_weights)
  bool json = false;

  CLI::App* add(CLI::App& app);
  int run() const;
};

struct RunCommand {
  std::string model;
  std::string input;
  std::string output;
  int threads = 0;
  std::string weights = "float";  // float or bf16 (Encoder::use_bf16_weights)

  CLI::App* add(CLI::App& app);
  int run() const;
};

}  // namespace shareformer::cli
