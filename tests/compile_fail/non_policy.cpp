// SPDX-License-Identifier: MIT
// Must NOT compile: Stack's Policy is not a sharing policy.
#include <shareformer/shareformer.hpp>

int main() {
  shareformer::BlockConfig c;
  shareformer::Stack<int> stack(c, 12);
  return static_cast<int>(stack.parameter_count());
}
