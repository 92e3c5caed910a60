// SPDX-License-Identifier: MIT
// A sharing layout chosen at run time: a LayerMap, checked against the equivalent compile-time
// policy.
#include <shareformer/shareformer.hpp>

#include <iostream>

int main() {
  using namespace shareformer;
  BlockConfig c;
  c.d_model = 64;
  c.n_heads = 4;
  c.d_ff = 128;
  // Layers 0..5 run blocks 0 1 2 2 1 0: Takase & Kiyono's CYCLE (REV) with M = 3.
  const LayerMap map = LayerMap::blocks({0, 1, 2, 2, 1, 0});
  Stack<LayerMap, double> runtime(c, 6, map);
  Stack<CycleRev<3>, double> typed(c, 6);
  runtime.randomize(3, 0.1, 0.1, 0.1);
  typed.randomize(3, 0.1, 0.1, 0.1);

  const Batch batch = Batch::padded(10, {10, 4});
  RowMatrix<double> x(batch.tokens(), c.d_model);
  for (Index i = 0; i < x.size(); ++i)
    x.data()[i] = static_cast<double>((i * 37) % 101) / 101.0 - 0.5;
  const RowMatrix<double> a = runtime.forward(x, batch, 1);
  const RowMatrix<double> b = typed.forward(x, batch, 1);
  std::cout << "distinct blocks: " << runtime.plan().attention_slots
            << ", parameters: " << runtime.parameter_count()
            << ", max difference to CycleRev<3>: " << (a - b).cwiseAbs().maxCoeff() << "\n";
  return (a - b).cwiseAbs().maxCoeff() == 0.0 && &runtime.ffn(0) == &runtime.ffn(5) ? 0 : 1;
}
