// SPDX-License-Identifier: MIT
// The CLI's commands: each adds its subcommand to the app and runs it once parsed.
#pragma once

#include <shareformer/ops/bf16_dot.hpp>

#include <CLI/CLI.hpp>
#include <stdexcept>
#include <string>

namespace shareformer::cli {

/// The --seq-len to use: `requested`, or when 0 the default 128 capped at `max_positions`.
inline long long default_seq_len(long long requested, long long max_positions) {
  return requested > 0 ? requested : (max_positions < 128 ? max_positions : 128);
}

/// A command line that parses but makes no sense (exit status 2, like a CLI11 parse error).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Adds --weights float|bf16|bf16dot|plain to a subcommand.
inline void add_weights_option(CLI::App* sub, std::string& weights, std::size_t bf16_max_rows) {
  sub->add_option("--weights", weights,
                  "Weight storage: float (each weight also kept packed in the order the product "
                  "kernel streams it: twice the bytes), bf16 (every weight rounded to bfloat16; "
                  "products over at most " +
                      std::to_string(bf16_max_rows) +
                      " tokens stream a packed bfloat16 copy, half the bytes; 2.5 times the bytes "
                      "in all), bf16dot (bfloat16 products with float sums: weights and each "
                      "product's input rounded to bfloat16, on AVX512-BF16 dot products; a "
                      "different precision; 1.5 times the bytes), or plain (float as loaded, no "
                      "copies: least memory, slower)")
      ->check(CLI::IsMember({"float", "bf16", "bf16dot", "plain"}))
      ->capture_default_str();
}

/// Applies a --weights choice to a Stack or Encoder: bf16 rounds (use_bf16_weights), and all but
/// plain pack (pack_weights); bf16dot switches to bfloat16 products (use_bf16_products), which
/// this binary must have the instructions for.
template <typename Model>
void apply_weights_option(Model& model, const std::string& weights) {
  if (weights == "bf16dot") {
    if (!ops::has_bf16_dot)
      throw UsageError(
          "--weights bf16dot: this binary was built without AVX512-BF16 instructions "
          "(build it with -march=native on a CPU that has them, e.g. cmake --preset "
          "release)");
    model.use_bf16_products();
    return;
  }
  if (weights == "bf16") model.use_bf16_weights();
  if (weights != "plain") model.pack_weights();
}

/// Bytes of weights in memory per byte of float weights under a --weights choice.
inline double weight_copies(const std::string& weights) {
  if (weights == "plain") return 1.0;
  if (weights == "bf16dot") return 1.5;
  return weights == "bf16" ? 2.5 : 2.0;
}

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
  bool measure_peak = false;      // --measure-peak: measure the peak instead of being told it
  std::string weights = "float";  // float, bf16, bf16dot or plain (apply_weights_option)
  bool json = false;

  CLI::App* add(CLI::App& app);
  int run() const;
};

struct RunCommand {
  std::string model;
  std::string input;
  std::string output;
  int threads = 0;
  std::string weights = "float";  // float, bf16, bf16dot or plain (apply_weights_option)

  CLI::App* add(CLI::App& app);
  int run() const;
};

}  // namespace shareformer::cli
