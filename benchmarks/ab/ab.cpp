// SPDX-License-Identifier: MIT
// ab: alternates variants of shareformer (modules built from ab_variant.cpp) inside one process,
// round by round, so that a shared machine's drift falls on all of them alike. Prints each
// variant's median time, its spread, the ratio of medians against the first variant, the median
// of the per-round ratios, and how far each variant's output lies from the first's.
//
//   ab --rounds 40 --threads 1 fwd --policy unshared --model bert-base --batch 1 --seq 16 A.so B.so
//   ab --rounds 30 --threads 2 prod --m 1024 --k 768 --n 3072 --reps 3 A.so B.so
//   ab --rounds 30 --threads 1 attn --batch 1 --seq 512 --d-head 64 A.so B.so   (attention alone)
//   ab --rounds 20 --threads 1,2 fwd --seq 512 A.so     (one module on 1 and on 2 threads)
//   ab --rounds 20 --threads 1,2 --pair fwd --seq 512 A.so   (and two 1-thread forwards at once)
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using MakeFn = void* (*)(int, int, int);
using FreeFn = void (*)(void*);
using ForwardFn = double (*)(void*, int, int, int, int, const float**, long*);
using ProductFn = double (*)(int, int, int, int, int, const float**, long*);
using AttentionFn = double (*)(int, int, int, int, int, int, const float**, long*);

struct Module {
  void* handle = nullptr;
  MakeFn make = nullptr;
  FreeFn free = nullptr;
  ForwardFn forward = nullptr;
  ProductFn product = nullptr;
  AttentionFn attention = nullptr;
};

template <typename F>
F symbol(void* handle, const std::string& path, const char* name) {
  void* s = dlsym(handle, name);
  if (s == nullptr) throw std::runtime_error(fmt::format("{}: no symbol {}", path, name));
  return reinterpret_cast<F>(s);  // NOLINT: dlsym's result is the function's address
}

Module load(const std::string& path) {
  Module m;
  // A name without a slash would be searched for on the library path, not in this folder.
  const std::string file = path.find('/') == std::string::npos ? "./" + path : path;
  // RTLD_LOCAL: each module keeps its own inline functions and templates.
  m.handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (m.handle == nullptr) throw std::runtime_error(dlerror());
  m.make = symbol<MakeFn>(m.handle, path, "sf_ab_make");
  m.free = symbol<FreeFn>(m.handle, path, "sf_ab_free");
  m.forward = symbol<ForwardFn>(m.handle, path, "sf_ab_forward");
  m.product = symbol<ProductFn>(m.handle, path, "sf_ab_product");
  m.attention = symbol<AttentionFn>(m.handle, path, "sf_ab_attention");
  return m;
}

std::uint32_t bits(float x) {
  std::uint32_t b = 0;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

/// Runs f(0) and f(1) on two threads that start together; returns the later of their two results
/// (each f returns the time of its own work, so this is the time until both had finished).
template <typename F>
double together(F&& f) {
  std::atomic<bool> go{false};
  double times[2] = {0.0, 0.0};
  std::thread second([&] {
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    times[1] = f(1);
  });
  go.store(true, std::memory_order_release);
  times[0] = f(0);
  second.join();
  return std::max(times[0], times[1]);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Alternates shareformer variants (ab_variant modules) inside one process"};
  app.require_subcommand(1);
  std::vector<std::string> paths;
  int rounds = 30;
  std::vector<int> threads{1};
  app.add_option("--rounds", rounds, "Rounds; each runs every variant once, in a rotating order")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", threads,
                 "Threads per call; several (e.g. 1,2) make each module a variant per count")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  bool pair = false;
  app.add_flag("--pair", pair,
               "Adds, per module, a variant that runs two 1-thread forwards of the same weights "
               "at once on two threads (fwd); its time is per forward, half the pair's, so that "
               "base/this against the module on 1 thread is how much two cores give together");
  bool expect_identical = false;
  app.add_flag("--expect-identical", expect_identical,
               "Exit 1 unless every variant's output equals the first's bit for bit");

  auto* fwd = app.add_subcommand("fwd", "Whole 12-layer forwards (packed weights)");
  int policy = 0, model = 1;
  int batch = 1, seq = 16;
  const std::map<std::string, int> policies{
      {"unshared", 0}, {"shared", 1}, {"shared-ffn", 2}, {"shared-attention", 3}};
  const std::map<std::string, int> models{{"seed", 0}, {"bert-base", 1}, {"minilm", 2}};
  fwd->add_option("--policy", policy)
      ->transform(CLI::CheckedTransformer(policies))
      ->default_str("unshared");
  fwd->add_option("--model", model)
      ->transform(CLI::CheckedTransformer(models))
      ->default_str("bert-base");
  int weights = 0;
  fwd->add_option("--weights", weights,
                  "float; bf16: rounded to bfloat16 (use_bf16_weights); bf16dot: bfloat16 products "
                  "(use_bf16_products)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, int>{{"float", 0}, {"bf16", 1}, {"bf16dot", 2}}))
      ->default_str("float");
  fwd->add_option("--batch", batch)->check(CLI::PositiveNumber);
  fwd->add_option("--seq", seq)->check(CLI::PositiveNumber);
  fwd->add_option("modules", paths, "Variant modules; the first is the baseline")->required();

  auto* prod = app.add_subcommand("prod", "Products with one packed weight matrix (in cache)");
  int m = 1024, k = 768, n = 3072, reps = 3;
  prod->add_option("--m", m)->check(CLI::PositiveNumber);
  prod->add_option("--k", k)->check(CLI::PositiveNumber);
  prod->add_option("--n", n)->check(CLI::PositiveNumber);
  prod->add_option("--reps", reps, "Products per timing")->check(CLI::PositiveNumber);
  prod->add_option("modules", paths, "Variant modules; the first is the baseline")->required();

  auto* attn = app.add_subcommand("attn", "Attention alone (ops::attention on a fused QKV matrix)");
  int d_head = 64, heads = 12;
  attn->add_option("--batch", batch)->check(CLI::PositiveNumber);
  attn->add_option("--seq", seq)->check(CLI::PositiveNumber);
  attn->add_option("--d-head", d_head)->check(CLI::PositiveNumber);
  attn->add_option("--heads", heads)->check(CLI::PositiveNumber);
  attn->add_option("--reps", reps, "Calls per timing")->check(CLI::PositiveNumber);
  attn->add_option("modules", paths, "Variant modules; the first is the baseline")->required();
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<Module> modules;
    modules.reserve(paths.size());
    for (const auto& p : paths) modules.push_back(load(p));
    // A variant is a module run on one thread count; the first is the baseline.
    // threads 0 stands for the pair: two 1-thread forwards at once.
    struct Variant {
      std::size_t module;
      int threads;
      std::string label;
    };
    if (pair && !fwd->parsed()) throw std::runtime_error("--pair applies to fwd only");
    std::vector<Variant> variants;
    for (std::size_t i = 0; i < modules.size(); ++i) {
      for (int t : threads)
        variants.push_back(
            {i, t, threads.size() > 1 || pair ? fmt::format("{} @{}t", paths[i], t) : paths[i]});
      if (pair) variants.push_back({i, 0, fmt::format("{} @1t x2", paths[i])});
    }
    const std::size_t v_count = variants.size();
    std::vector<std::vector<double>> ms(v_count);
    std::vector<double> max_diff(v_count, 0.0);
    std::vector<long> differ(v_count, 0);  // elements whose bits differ from the first variant's
    // Runs variant v once: returns its time in ms and points *data at its output (*size floats).
    std::function<double(const Variant&, const float**, long*)> call;
    std::vector<void*> stacks;
    if (fwd->parsed()) {
      stacks.reserve(modules.size());
      for (auto& mod : modules) stacks.push_back(mod.make(policy, model, weights));
      call = [&](const Variant& v, const float** data, long* size) {
        const auto once = [&](int slot, int t) {
          return modules[v.module].forward(stacks[v.module], slot, batch, seq, t,
                                           slot == 0 ? data : nullptr, slot == 0 ? size : nullptr);
        };
        // The pair's two forwards take twice the work: its time per forward is half its time.
        return v.threads > 0 ? once(0, v.threads) : together([&](int s) { return once(s, 1); }) / 2;
      };
    } else if (attn->parsed()) {
      call = [&](const Variant& v, const float** data, long* size) {
        return modules[v.module].attention(batch, seq, d_head, heads, v.threads, reps, data, size);
      };
    } else {
      call = [&](const Variant& v, const float** data, long* size) {
        return modules[v.module].product(m, k, n, v.threads, reps, data, size);
      };
    }
    // As call; out, when given, receives a copy of the output.
    const auto run = [&](const Variant& v, std::vector<float>* out) {
      const float* data = nullptr;
      long size = 0;
      const double t = call(v, &data, &size);
      if (out != nullptr) out->assign(data, data + size);
      return t;
    };
    std::vector<std::vector<float>> outputs(v_count);
    for (std::size_t v = 0; v < v_count; ++v) run(variants[v], &outputs[v]);  // sizes and warms
    for (std::size_t v = 1; v < v_count; ++v) {
      if (outputs[v].size() != outputs[0].size())
        throw std::runtime_error(fmt::format("{} gives {} output values, {} gives {}",
                                             variants[v].label, outputs[v].size(),
                                             variants[0].label, outputs[0].size()));
      for (std::size_t i = 0; i < outputs[0].size(); ++i) {
        const float a = outputs[0][i], b = outputs[v][i];
        if (bits(a) == bits(b)) continue;
        ++differ[v];
        const double d = std::fabs(double(b) - double(a));
        max_diff[v] = std::isnan(d) ? d : std::max(max_diff[v], d);  // a NaN stays
      }
    }
    for (int r = 0; r < rounds; ++r)
      for (std::size_t j = 0; j < v_count; ++j) {
        const std::size_t v = (j + static_cast<std::size_t>(r)) % v_count;
        ms[v].push_back(run(variants[v], nullptr));
      }
    for (std::size_t i = 0; i < stacks.size(); ++i) modules[i].free(stacks[i]);

    const double base = median(ms[0]);
    fmt::print("{:<44} {:>10} {:>21} {:>10} {:>10} {:>10} {:>8}\n", "variant", "median ms",
               "min-max", "base/this", "per-round", "max |diff|", "differ");
    bool identical = true;
    for (std::size_t v = 0; v < v_count; ++v) {
      std::vector<double> ratios;
      for (std::size_t r = 0; r < ms[v].size(); ++r) ratios.push_back(ms[0][r] / ms[v][r]);
      const auto [lo, hi] = std::minmax_element(ms[v].begin(), ms[v].end());
      fmt::print("{:<44} {:>10.3f} {:>10.3f}-{:<10.3f} {:>10.3f} {:>10.3f} {:>10.3g} {:>8}\n",
                 variants[v].label, median(ms[v]), *lo, *hi, base / median(ms[v]), median(ratios),
                 max_diff[v], differ[v]);
      identical = identical && differ[v] == 0;
    }
    if (expect_identical && !identical) {
      fmt::print(stderr, "ab: the variants' outputs differ\n");
      return 1;
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "ab: {}\n", e.what());
    return 1;
  }
  return 0;
}
