// SPDX-License-Identifier: MIT
// The README's API example with its figures checked (exit 1 if a count or the output is wrong);
// the README's block itself is compiled and run as printed by the test example_readme.
#include <shareformer/shareformer.hpp>

#include <iostream>

int main() {
  using namespace shareformer;
  BlockConfig c;
  c.d_model = 512;
  c.n_heads = 8;
  c.d_ff = 2048;                   // post-LN, GELU (erf), eps 1e-5 by default
  Stack<SharedAll> albert(c, 12);  // one block applied 12 times
  Stack<Unshared> bert(c, 12);     // 12 distinct blocks
  std::cout << "SharedAll parameters: " << albert.parameter_count() << "\n"  // 3152384
            << "Unshared parameters:  " << bert.parameter_count() << "\n";   // 37828608

  albert.randomize(/*seed=*/1);
  // Two sequences padded to 16 tokens: 16 and 9 valid tokens.
  const Batch batch = Batch::padded(16, {16, 9});
  const RowMatrix<float> x = RowMatrix<float>::Constant(batch.tokens(), c.d_model, 0.5f);
  const RowMatrix<float> y = albert.forward(x, batch);  // (2 * 16, 512)
  std::cout << "output " << y.rows() << " x " << y.cols() << ", GFLOP per forward "
            << static_cast<double>(albert.flops(batch.batch(), batch.seq_len()).matmul) / 1e9
            << "\n";
  return albert.parameter_count() == 3152384 && bert.parameter_count() == 37828608 && y.allFinite()
             ? 0
             : 1;
}
