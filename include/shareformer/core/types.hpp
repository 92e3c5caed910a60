// SPDX-License-Identifier: MIT
// Basic matrix and index types shared by every tier.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string>

namespace shareformer {

/// Signed index type used for every dimension (Eigen's).
using Index = Eigen::Index;

/// Row-major dynamic matrix: activations are (tokens, features), one token per row.
template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Dynamic row vector (biases, LayerNorm gains), broadcast over the rows of a RowMatrix.
template <typename T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;

/// Mutable and read-only views of a row-major matrix (blocks, maps or whole matrices).
template <typename T>
using MatrixRef = Eigen::Ref<RowMatrix<T>>;
template <typename T>
using ConstMatrixRef = Eigen::Ref<const RowMatrix<T>>;

/// Zero-copy view of a row-major block of memory (loaded weights).
template <typename T>
using RowMatrixMap = Eigen::Map<RowMatrix<T>>;

namespace detail {
inline std::string to_string(Index value) { return std::to_string(static_cast<long long>(value)); }
}  // namespace detail

}  // namespace shareformer
