// SPDX-License-Identifier: MIT
// `shareformer bench`: times the layer stack's forward under each sharing policy.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <shareformer/core/batch.hpp>
#include <shareformer/core/parallel.hpp>
#include <shareformer/count/accounting.hpp>
#include <shareformer/layers/workspace.hpp>
#include <shareformer/models/stack.hpp>
#include <shareformer/ops/gemm.hpp>
#include <vector>

#include "commands.hpp"
#include "model_source.hpp"
#include "output.hpp"
#include "peak.hpp"
#include "policy_names.hpp"
#include "presets.hpp"

namespace shareformer::cli {

namespace {

// Timings and sizes of one policy.
struct Result {
  std::string policy;
  Index parameters = 0;  // unique parameters of the stack
  std::int64_t weight_bytes = 0;
  std::int64_t flops = 0;  // matmul FLOPs of one forward
  std::vector<double> ms;  // one per timed iteration
  double median_ms = 0, min_ms = 0, mean_ms = 0;
};

// The bench's settings once resolved.
struct Setup {
  EncoderConfig config;
  Index batch = 1, seq_len = 1;
  int threads = 1, iterations = 1, warmup = 0;
  std::uint64_t seed = 0;
  std::string weights = "float";  // --weights
};

// Times `iterations` forwards of a Stack<Policy> with seeded random weights, on the same seeded
// random input each time, after `warmup` untimed ones; one Workspace throughout (steady state).
template <typename Policy>
Result bench_policy(const Setup& s, Progress& progress) {
  using Clock = std::chrono::steady_clock;
  const BlockConfig block = s.config.block();
  Stack<Policy, float> stack(block, s.config.stack_layers());
  stack.randomize(s.seed);
  apply_weights_option(stack, s.weights);

  const Batch batch = Batch::uniform(s.batch, s.seq_len);
  RowMatrix<float> input(batch.tokens(), block.d_model);  // (batch * seq_len, d_model)
  std::mt19937_64 rng(s.seed + 1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (Index i = 0; i < input.size(); ++i) input.data()[i] = normal(rng);
  RowMatrix<float> h = input;
  Workspace<float> ws;

  Result r;
  r.policy = Policy::name();
  r.parameters = stack.parameter_count();
  r.weight_bytes = stack.weight_bytes();
  r.flops = stack.flops(s.batch, s.seq_len).matmul;
  const int total = s.warmup + s.iterations;
  for (int i = 0; i < total; ++i) {
    progress.update(
        fmt::format("bench: {} {}/{}{}", r.policy, i + 1, total, i < s.warmup ? " (warm-up)" : ""));
    h = input;  // same size: a copy, no allocation
    const auto t0 = Clock::now();
    stack.forward(h, batch, ws, s.threads);
    const auto t1 = Clock::now();
    if (i >= s.warmup) r.ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::vector<double> sorted = r.ms;
  std::sort(sorted.begin(), sorted.end());
  const std::size_t n = sorted.size();
  r.median_ms = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  r.min_ms = sorted.front();
  r.mean_ms = std::accumulate(sorted.begin(), sorted.end(), 0.0) / static_cast<double>(n);
  return r;
}

Result bench_named(const std::string& policy, const Setup& s, Progress& progress) {
  if (policy == "none") return bench_policy<Unshared>(s, progress);
  if (policy == "ffn") return bench_policy<SharedFfn>(s, progress);
  if (policy == "attention") return bench_policy<SharedAttention>(s, progress);
  return bench_policy<SharedAll>(s, progress);
}

// Refuses a run whose weights and activations would not fit in 80% of physical memory.
void check_memory(const Setup& s, const std::vector<std::string>& policies) {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return;
  const double physical = static_cast<double>(pages) * static_cast<double>(page);
  const BlockConfig block = s.config.block();
  const double tokens = static_cast<double>(s.batch) * static_cast<double>(s.seq_len);
  const double activations = 4.0 * tokens * static_cast<double>(7 * block.d_model + block.d_ff) +
                             4.0 * static_cast<double>(s.threads) * static_cast<double>(s.seq_len) *
                                 static_cast<double>(s.seq_len);
  for (const std::string& name : policies) {
    const SlotPlan plan = policy_plan(name, s.config.stack_layers());
    // The packed copies (--weights) come on top of the float weights.
    const double weights = weight_copies(s.weights) *
                           static_cast<double>(count::weight_bytes<float>(
                               count::stack(block, plan.attention_slots, plan.ffn_slots).total()));
    if (weights + activations > 0.8 * physical)
      throw Error(fmt::format(
          "bench: policy '{}' needs {:.2f} GiB of weights and activations, more than 80% of this "
          "machine's {:.2f} GiB of memory (choose another --policy, a smaller model or batch)",
          name, (weights + activations) / 1073741824.0, physical / 1073741824.0));
  }
}

}  // namespace

CLI::App* BenchCommand::add(CLI::App& app) {
  CLI::App* sub = app.add_subcommand(
      "bench",
      "Time the layer stack's forward (embeddings and pooler excluded) under each sharing policy, "
      "with seeded random weights and random inputs. A model directory's weights are not loaded: "
      "only its configuration is used, with random weights of the same shapes.");
  CLI::Option* model_opt = sub->add_option("--model", model,
                                           "Model whose configuration to use: a Hugging Face model "
                                           "directory, a config.json or a preset");
  CLI::Option* preset_opt = sub->add_option("--preset", preset, "Preset: " + preset_names());
  std::vector<std::string> names;
  for (const Preset& p : presets()) names.push_back(p.name);
  preset_opt->check(CLI::IsMember(names));
  model_opt->excludes(preset_opt);
  preset_opt->excludes(model_opt);
  sub->add_option("--batch", batch, "Sequences per forward")
      ->check(CLI::Range(1LL, 1LL << 20))
      ->capture_default_str();
  sub->add_option("--seq-len", seq_len,
                  "Tokens per sequence (default 128, or max_position_embeddings when smaller)")
      ->check(CLI::Range(1LL, 1LL << 20));
  sub->add_option("--threads", threads, "Threads (0 = all hardware threads)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  sub->add_option("--policy", policy,
                  "Sharing policy: none, ffn, attention, all, or each (all four in turn)")
      ->check(CLI::IsMember({"none", "ffn", "attention", "all", "each"}))
      ->capture_default_str();
  sub->add_option("--iterations", iterations, "Timed forwards per policy")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  sub->add_option("--warmup", warmup, "Untimed forwards before timing")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  sub->add_option("--seed", seed, "Seed of the random weights and inputs")->capture_default_str();
  CLI::Option* peak_opt =
      sub->add_option("--peak-gflops", peak_gflops,
                      "The machine's peak GFLOP/s: also print the fraction of it achieved")
          ->check(CLI::PositiveNumber);
  sub->add_flag("--measure-peak", measure_peak,
                "Measure the multiply-add peak of --threads threads with this build's vectors "
                "(about 1 s) and print the fraction of it achieved")
      ->excludes(peak_opt);
  add_weights_option(sub, weights, static_cast<std::size_t>(ops::bf16_gemm_max_rows));
  sub->add_flag("--json", json, "Print one JSON object instead of a table");
  return sub;
}

int BenchCommand::run() const {
  if (model.empty() == preset.empty())
    throw UsageError("bench: give exactly one of --model and --preset");
  const ModelSource m = resolve_model(model.empty() ? preset : model);

  Setup s;
  s.config = m.config;
  s.batch = static_cast<Index>(batch);
  s.seq_len = static_cast<Index>(default_seq_len(seq_len, m.config.max_position_embeddings));
  s.threads = shareformer::detail::resolve_threads(threads);
  s.iterations = iterations;
  s.warmup = warmup;
  s.seed = seed;
  s.weights = weights;
  std::vector<std::string> policies;
  if (policy == "each")
    policies.assign(kPolicyNames.begin(), kPolicyNames.end());
  else
    policies.push_back(policy);
  check_memory(s, policies);

  std::vector<Result> results;
  FmaPeak measured;
  {
    Progress progress;
    if (measure_peak) {
      progress.update("bench: measuring the multiply-add peak");
      measured = measure_fma_peak(s.threads);
    }
    for (const std::string& p : policies) results.push_back(bench_named(p, s, progress));
  }
  const double peak = measure_peak ? measured.gflops : peak_gflops;

  const double tokens = static_cast<double>(s.batch * s.seq_len);
  const auto gflops = [](const Result& r) {
    return static_cast<double>(r.flops) / (r.median_ms * 1e6);
  };
  if (json) {
    nlohmann::ordered_json out = {
        {"model", m.name},     {"source", to_string(m.kind)}, {"config", config_json(m.config)},
        {"weights", "random"}, {"weight_storage", weights},   {"seed", s.seed},
        {"warmup", s.warmup}};
    if (peak > 0) {
      out["peak_gflops"] = peak;
      out["peak_source"] = measure_peak ? "measured" : "given";
      if (measure_peak) {
        out["peak_threads"] = measured.threads;
        out["peak_vector_floats"] = measured.lanes;
      }
    }
    out["results"] = nlohmann::ordered_json::array();
    for (const Result& r : results) {
      nlohmann::ordered_json j = {{"policy", r.policy},
                                  {"batch", s.batch},
                                  {"seq_len", s.seq_len},
                                  {"threads", s.threads},
                                  {"iterations", s.iterations},
                                  {"median_ms", r.median_ms},
                                  {"min_ms", r.min_ms},
                                  {"mean_ms", r.mean_ms},
                                  {"gflops", gflops(r)},
                                  {"tokens_per_s", tokens / (r.median_ms / 1e3)},
                                  {"flops_per_forward", r.flops},
                                  {"parameters", r.parameters},
                                  {"weight_bytes", r.weight_bytes}};
      if (peak > 0) j["percent_of_peak"] = 100.0 * gflops(r) / peak;
      out["results"].push_back(j);
    }
    std::cout << out.dump(2) << '\n';
    return 0;
  }

  std::cout << fmt::format(
      "{} ({}): layer stack of {} blocks, d_model {}, {} heads, d_ff {}\n"
      "batch {} x seq_len {}, {} threads, {} timed forwards after {} warm-up, random {} weights "
      "(seed {})\n\n",
      m.name, to_string(m.kind), s.config.stack_layers(), s.config.d_model, s.config.n_heads,
      s.config.d_ff, s.batch, s.seq_len, s.threads, s.iterations, s.warmup, weights, s.seed);
  std::vector<std::string> header{"policy", "unique params", "weight MiB", "median ms",
                                  "min ms", "tokens/s",      "GFLOP/s"};
  if (peak > 0) header.push_back("% of peak");
  Table table(header);
  for (const Result& r : results) {
    std::vector<std::string> row{r.policy,
                                 grouped(r.parameters),
                                 decimal(mib(r.weight_bytes)),
                                 fmt::format("{:.3f}", r.median_ms),
                                 fmt::format("{:.3f}", r.min_ms),
                                 fmt::format("{:.0f}", tokens / (r.median_ms / 1e3)),
                                 decimal(gflops(r))};
    if (peak > 0) row.push_back(fmt::format("{:.1f}", 100.0 * gflops(r) / peak));
    table.add(row);
  }
  std::cout
      << table.str()
      << fmt::format(
             "GFLOP/s: analytic matmul FLOPs ({} GFLOP per forward, the same for every policy)\n"
             "over the median time; embeddings and pooler are not run.\n",
             decimal(static_cast<double>(results.front().flops) / 1e9));
  if (measure_peak)
    std::cout << fmt::format(
        "% of peak: of {} GFLOP/s, measured (best of {}) on {} thread{} multiply-adding\n"
        "{}-float vectors, the widest this binary was built for.\n",
        decimal(measured.gflops), measured.repeats, measured.threads,
        measured.threads == 1 ? "" : "s", measured.lanes);
  else if (peak > 0)
    std::cout << fmt::format("% of peak: of {} GFLOP/s, as given by --peak-gflops.\n",
                             decimal(peak));
  return 0;
}

}  // namespace shareformer::cli
