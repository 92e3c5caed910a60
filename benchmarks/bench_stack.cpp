// SPDX-License-Identifier: MIT
// One layer and whole 12-layer stacks per sharing policy and shape: FLOP/s from the analytic count
// (a rate counter) and the unique weight bytes (a plain counter). Sharing changes bytes, not FLOPs.
#include "bench_data.hpp"

#include <shareformer/shareformer.hpp>

#include <benchmark/benchmark.h>

namespace sf = shareformer;
using sf::Index;

namespace {

using bench::preset;

// How the weights are kept: as loaded (plain), also packed (Stack::pack_weights, the default), or
// rounded to bfloat16 with a packed bfloat16 copy for products of up to ops::bf16_gemm_max_rows
// rows and a packed float one above (Stack::use_bf16_weights, then pack_weights); or bfloat16
// products with float sums (Stack::use_bf16_products: a different precision).
enum class Weights { Plain, Packed, Bf16, Bf16Products };

template <typename Policy>
void run_stack(benchmark::State& state, Index n_layers, Weights weights = Weights::Packed) {
  const sf::BlockConfig c = preset(static_cast<int>(state.range(0)));
  const Index batch = state.range(1), seq_len = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  if (weights == Weights::Bf16Products && !sf::ops::has_bf16_dot) {
    state.SkipWithError("bfloat16 products need a build with AVX512-BF16 (-march=native)");
    return;
  }
  sf::Stack<Policy> stack(c, n_layers);
  stack.randomize(1);
  if (weights == Weights::Bf16) stack.use_bf16_weights();
  if (weights == Weights::Bf16 || weights == Weights::Packed) stack.pack_weights();
  if (weights == Weights::Bf16Products) stack.use_bf16_products();
  const sf::Batch layout = sf::Batch::uniform(batch, seq_len);
  const sf::RowMatrix<float> x = bench::noise(layout.tokens(), c.d_model, 2);
  sf::RowMatrix<float> h = x;
  sf::Workspace<float> ws;
  for (auto _ : state) {
    h = x;
    stack.forward(h, layout, ws, threads);
    benchmark::DoNotOptimize(h.data());
    benchmark::ClobberMemory();
  }
  const auto flops = stack.flops(batch, seq_len);
  state.counters["FLOP/s"] = benchmark::Counter(static_cast<double>(flops.matmul),
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.counters["FLOP/layer"] = static_cast<double>(flops.matmul) / static_cast<double>(n_layers);
  state.counters["param_bytes"] = static_cast<double>(stack.weight_bytes());
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(layout.tokens()),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"model", "batch", "seq", "threads"});
  for (int model : {0, 1})
    for (auto [batch, seq] : {std::pair<int, int>{1, 16}, {1, 32}, {1, 128}, {8, 128}, {1, 512}})
      for (int threads : {1, 2}) b->Args({model, batch, seq, threads});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

void small_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"model", "batch", "seq", "threads"});
  for (int model : {0, 1})
    for (int seq : {16, 32})
      for (int threads : {1, 2}) b->Args({model, 1, seq, threads});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

// One layer: the per-layer cost, identical for every policy.
static void Layer(benchmark::State& state) { run_stack<sf::Unshared>(state, 1); }
BENCHMARK(Layer)->Apply(shapes);

static void Stack12_Unshared(benchmark::State& state) { run_stack<sf::Unshared>(state, 12); }
static void Stack12_SharedFfn(benchmark::State& state) { run_stack<sf::SharedFfn>(state, 12); }
static void Stack12_SharedAttention(benchmark::State& state) {
  run_stack<sf::SharedAttention>(state, 12);
}
static void Stack12_SharedAll(benchmark::State& state) { run_stack<sf::SharedAll>(state, 12); }
BENCHMARK(Stack12_Unshared)->Apply(shapes);
BENCHMARK(Stack12_SharedFfn)->Apply(shapes);
BENCHMARK(Stack12_SharedAttention)->Apply(shapes);
BENCHMARK(Stack12_SharedAll)->Apply(shapes);

// bfloat16 weights, and the weights unpacked, at the sizes where streaming the weights bounds the
// time.
static void Stack12_Unshared_Bf16(benchmark::State& state) {
  run_stack<sf::Unshared>(state, 12, Weights::Bf16);
}
static void Stack12_SharedAll_Bf16(benchmark::State& state) {
  run_stack<sf::SharedAll>(state, 12, Weights::Bf16);
}
static void Stack12_Unshared_Plain(benchmark::State& state) {
  run_stack<sf::Unshared>(state, 12, Weights::Plain);
}
static void Stack12_SharedAll_Plain(benchmark::State& state) {
  run_stack<sf::SharedAll>(state, 12, Weights::Plain);
}
BENCHMARK(Stack12_Unshared_Bf16)->Apply(small_shapes);
BENCHMARK(Stack12_SharedAll_Bf16)->Apply(small_shapes);
BENCHMARK(Stack12_Unshared_Plain)->Apply(small_shapes);
BENCHMARK(Stack12_SharedAll_Plain)->Apply(small_shapes);

// bfloat16 products (AVX512-BF16 dot products) at every shape: twice the FLOPs per instruction.
static void Stack12_Unshared_Bf16Products(benchmark::State& state) {
  run_stack<sf::Unshared>(state, 12, Weights::Bf16Products);
}
static void Stack12_SharedAll_Bf16Products(benchmark::State& state) {
  run_stack<sf::SharedAll>(state, 12, Weights::Bf16Products);
}
BENCHMARK(Stack12_Unshared_Bf16Products)->Apply(shapes);
BENCHMARK(Stack12_SharedAll_Bf16Products)->Apply(shapes);

#include "bench_main.hpp"
