// SPDX-License-Identifier: MIT
// A consumer project's program: builds against the installed or embedded library and checks counts.
#include <shareformer/shareformer.hpp>

int main() {
  shareformer::BlockConfig c;
  const shareformer::Stack<shareformer::SharedAll> albert(c, 12);
  const shareformer::Stack<shareformer::Unshared> bert(c, 12);
  return albert.parameter_count() == 3152384 && bert.parameter_count() == 37828608 ? 0 : 1;
}
