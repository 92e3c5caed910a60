// SPDX-License-Identifier: MIT
// Prints what each sharing policy costs in parameters and what it does not change (FLOPs).
#include <shareformer/shareformer.hpp>

#include <cstdio>

namespace sf = shareformer;

template <typename Policy>
void row(const char* name, const sf::BlockConfig& c, sf::Index layers) {
  const sf::Stack<Policy> stack(c, layers);
  std::printf("%-16s %12lld %12lld %10.2f MiB %8.2f GFLOP\n", name,
              static_cast<long long>(stack.parameter_count()),
              static_cast<long long>(stack.unshared_parameter_count()),
              static_cast<double>(stack.weight_bytes()) / (1024.0 * 1024.0),
              static_cast<double>(stack.flops(1, 128).matmul) / 1e9);
}

int main() {
  sf::BlockConfig c;  // the seed's d_model 512, 8 heads, d_ff 2048
  std::printf("%-16s %12s %12s %14s %14s\n", "policy", "unique", "as unshared", "fp32 weights",
              "1x128 forward");
  row<sf::Unshared>("none", c, 12);
  row<sf::SharedFfn>("ffn", c, 12);
  row<sf::SharedAttention>("attention", c, 12);
  row<sf::SharedAll>("all (ALBERT)", c, 12);
  row<sf::Sequence<3>>("sequence:3", c, 12);
  row<sf::Cycle<3>>("cycle:3", c, 12);
  row<sf::CycleRev<3>>("cycle_rev:3", c, 12);
  row<sf::Repeat<2>>("repeat:2", c, 12);
  return 0;
}
