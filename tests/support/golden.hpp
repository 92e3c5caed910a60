// SPDX-License-Identifier: MIT
// The Hub-layout golden checkpoints (tests/golden/data/hf/<name>/: config.json, model.safetensors
// and io.safetensors with the inputs and PyTorch's outputs): reading them and comparing to them.
#pragma once

#include <shareformer/shareformer.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

namespace shareformer::testing {

/// The directory of golden checkpoint `name`.
inline std::string golden(const std::string& name) {
  return std::string(SHAREFORMER_GOLDEN_DIR) + "/hf/" + name;
}

/// An I64 [rows, cols] tensor of a golden io file.
inline IdMatrix ids_of(const io::SafetensorsFile& file, const std::string& name) {
  const auto& info = file.info(name);
  const auto values = file.values<std::int64_t>(name);
  return Eigen::Map<const IdMatrix>(values.data(), info.shape.at(0), info.shape.at(1));
}

struct Golden {
  IdMatrix input_ids, attention_mask, token_type_ids;
  RowMatrix<float> last_hidden_state;  // (batch * seq_len, H)
  RowMatrix<float> pooler_output;      // (batch, H)
};

inline Golden read_golden(const std::string& name) {
  const auto file = io::SafetensorsFile::open(golden(name) + "/io.safetensors");
  Golden g;
  g.input_ids = ids_of(file, "input_ids");
  g.attention_mask = ids_of(file, "attention_mask");
  g.token_type_ids = ids_of(file, "token_type_ids");
  const auto& shape = file.info("last_hidden_state").shape;
  EXPECT_EQ(shape.size(), 3u);
  const auto hidden = file.values<float>("last_hidden_state");
  g.last_hidden_state =
      Eigen::Map<const RowMatrix<float>>(hidden.data(), shape[0] * shape[1], shape[2]);
  g.pooler_output = file.matrix<float>("pooler_output");
  return g;
}

/// Largest error over the rows whose attention_mask is 1.
template <typename T>
double unmasked_error(const RowMatrix<T>& got, const Golden& g) {
  EXPECT_EQ(got.rows(), g.last_hidden_state.rows());
  EXPECT_EQ(got.cols(), g.last_hidden_state.cols());
  double worst = 0;
  const Index seq_len = g.input_ids.cols();
  for (Index b = 0; b < g.input_ids.rows(); ++b)
    for (Index s = 0; s < seq_len; ++s)
      if (g.attention_mask(b, s) == 1)
        for (Index c = 0; c < got.cols(); ++c)
          worst = std::max(worst,
                           std::abs(static_cast<double>(got(b * seq_len + s, c)) -
                                    static_cast<double>(g.last_hidden_state(b * seq_len + s, c))));
  return worst;
}

}  // namespace shareformer::testing
