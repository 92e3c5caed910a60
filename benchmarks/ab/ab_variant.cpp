// SPDX-License-Identifier: MIT
// One variant of shareformer for the `ab` driver: built as a module (a shared library that hides
// every symbol but the functions below), once per variant, from this tree or another one and with
// its own macros. Each module holds its own copy of every inline function and template, so the
// driver can load several and alternate between them inside one process.
#include "../bench_data.hpp"

#include <shareformer/shareformer.hpp>

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <tuple>
#include <variant>
#include <vector>

namespace sf = shareformer;

namespace {

using bench::noise;
using bench::preset;

using AnyStack = std::variant<sf::Stack<sf::Unshared>, sf::Stack<sf::SharedAll>,
                              sf::Stack<sf::SharedFfn>, sf::Stack<sf::SharedAttention>>;

AnyStack make_stack(int policy, const sf::BlockConfig& c) {
  switch (policy) {
    case 1: return sf::Stack<sf::SharedAll>(c, 12);
    case 2: return sf::Stack<sf::SharedFfn>(c, 12);
    case 3: return sf::Stack<sf::SharedAttention>(c, 12);
    default: return sf::Stack<sf::Unshared>(c, 12);
  }
}

struct Model {
  Model(int policy, int model, int weights)
      : config(preset(model)), stack(make_stack(policy, config)) {
    std::visit(
        [&](auto& s) {
          s.randomize(1);
          if (weights == 2) {  // as the CLI's --weights bf16dot: no float copies packed
            s.use_bf16_products();
            return;
          }
          if (weights == 1) s.use_bf16_weights();
          s.pack_weights();
        },
        stack);
  }
  sf::BlockConfig config;
  AnyStack stack;
  /// What one forward works on. Two, so that two threads can run forwards of the same weights at
  /// once (ab --pair).
  struct Slot {
    sf::Workspace<float> ws;
    sf::RowMatrix<float> x, h;
  };
  std::array<Slot, 2> slots;
};

struct Product {
  sf::RowMatrix<float> a, c;
  std::unique_ptr<sf::ops::PackedMatrix<float>> b;
  sf::ops::GemmScratch<float> scratch;
};

struct Attention {
  sf::RowMatrix<float> qkv, ctx;
  std::vector<sf::RowMatrix<float>> scratch;
};

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

extern "C" {

/// A packed 12-layer stack: policy 0 Unshared, 1 SharedAll, 2 SharedFfn, 3 SharedAttention;
/// model 0 the seed's shape, 1 bert-base's, 2 MiniLM's (d 384, 12 heads; 12 layers here);
/// weights 0 float, 1 rounded to bfloat16 with packed bfloat16 copies for small inputs
/// (use_bf16_weights), 2 bfloat16 products (use_bf16_products; AVX512-BF16 builds). Weights from
/// randomize(1), the same in every variant.
__attribute__((visibility("default"))) void* sf_ab_make(int policy, int model, int weights) {
  return new Model(policy, model, weights);
}

__attribute__((visibility("default"))) void sf_ab_free(void* model) {
  delete static_cast<Model*>(model);
}

/// One forward of `batch` sequences of `seq` tokens (inputs from a fixed seed) in slot 0 or 1 of
/// the model (its own workspace, input and output; two threads may run one slot each at once);
/// returns its time in ms and, when out and size are given, points *out at its output
/// (*size = tokens x d_model floats, valid until the slot's next call).
__attribute__((visibility("default"))) double sf_ab_forward(void* model, int slot, int batch,
                                                            int seq, int threads, const float** out,
                                                            long* size) {
  auto& m = *static_cast<Model*>(model);
  auto& io = m.slots.at(static_cast<std::size_t>(slot));
  const sf::Batch layout = sf::Batch::uniform(batch, seq);
  if (io.x.rows() != layout.tokens()) io.x = noise(layout.tokens(), m.config.d_model, 2);
  io.h = io.x;
  const auto t0 = std::chrono::steady_clock::now();
  std::visit([&](const auto& s) { s.forward(io.h, layout, io.ws, threads); }, m.stack);
  const double ms = ms_since(t0);
  if (out != nullptr) *out = io.h.data();
  if (size != nullptr) *size = static_cast<long>(io.h.size());
  return ms;
}

/// `reps` products c = a (m x k) * b (k x n) with b packed, one matrix kept per shape; returns
/// the mean time of one in ms and, when out and size are given, points *out at c (*size = m x n
/// floats, valid until the next call of that shape).
__attribute__((visibility("default"))) double sf_ab_product(int m, int k, int n, int threads,
                                                            int reps, const float** out,
                                                            long* size) {
  static std::map<std::tuple<int, int, int>, Product> cache;
  Product& p = cache[{m, k, n}];
  if (!p.b) {
    p.a = noise(m, k, 1);
    p.b = std::make_unique<sf::ops::PackedMatrix<float>>(noise(k, n, 2));
    p.c.resize(m, n);
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) {
    p.c.setZero();
    sf::ops::gemm_accumulate<float>(p.a, *p.b, p.c, threads, p.scratch);
  }
  const double ms = ms_since(t0) / reps;
  if (out != nullptr) *out = p.c.data();
  if (size != nullptr) *size = static_cast<long>(p.c.size());
  return ms;
}

/// `reps` calls of ops::attention on a fused QKV matrix of noise, `batch` sequences of `seq`
/// tokens, `heads` heads of `d_head` columns (inputs and scratch kept per shape); returns the mean
/// time of one in ms and, when out and size are given, points *out at the context of the last
/// call (*size = tokens x heads x d_head floats, valid until the next call of that shape).
__attribute__((visibility("default"))) double sf_ab_attention(int batch, int seq, int d_head,
                                                              int heads, int threads, int reps,
                                                              const float** out, long* size) {
  static std::map<std::tuple<int, int, int, int>, Attention> cache;
  Attention& a = cache[{batch, seq, d_head, heads}];
  const sf::Batch layout = sf::Batch::uniform(batch, seq);
  const sf::Index d = sf::Index{d_head} * heads;
  if (a.qkv.size() == 0) {
    a.qkv = noise(layout.tokens(), 3 * d, 3);
    a.ctx.resize(layout.tokens(), d);
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r)
    sf::ops::attention<float>(a.qkv, layout, heads, false, a.ctx, a.scratch, threads);
  const double ms = ms_since(t0) / reps;
  if (out != nullptr) *out = a.ctx.data();
  if (size != nullptr) *size = static_cast<long>(a.ctx.size());
  return ms;
}

}  // extern "C"
