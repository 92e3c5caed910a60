// SPDX-License-Identifier: MIT
// Batch: how the rows of an activation matrix split into sequences, and which keys are padding.
#pragma once

#include <shareformer/core/error.hpp>
#include <shareformer/core/types.hpp>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace shareformer {

/// The layout of `batch` sequences of `seq_len` rows each in a (batch * seq_len, d_model) matrix,
/// with the valid keys of each sequence: a prefix of `length(b)` positions, or an arbitrary 0/1
/// mask.
class Batch {
 public:
  /// `batch` sequences, all `seq_len` long (no padding). Throws ShapeError on a size < 1.
  static Batch uniform(Index batch, Index seq_len) {
    check_positive("batch", batch);
    check_positive("seq_len", seq_len);
    return Batch(seq_len, std::vector<Index>(static_cast<std::size_t>(batch), seq_len), {});
  }

  /// Sequences padded to `seq_len`, sequence b holding `lengths[b]` valid tokens followed by
  /// padding. Throws ShapeError when there is no sequence or a length is 0 or above seq_len.
  static Batch padded(Index seq_len, std::vector<Index> lengths) {
    check_positive("seq_len", seq_len);
    if (lengths.empty()) throw ShapeError("Batch: no sequence (lengths is empty)");
    for (std::size_t b = 0; b < lengths.size(); ++b) {
      if (lengths[b] < 1 || lengths[b] > seq_len)
        throw ShapeError("Batch: length of sequence " + std::to_string(b) + " is " +
                         detail::to_string(lengths[b]) + ", expected 1.." +
                         detail::to_string(seq_len));
    }
    return Batch(seq_len, std::move(lengths), {});
  }

  /// From a (batch, seq_len) 0/1 attention mask, 1 = attend (Hugging Face's `attention_mask`).
  /// Throws ShapeError on an empty mask or a value other than 0 or 1.
  template <typename Derived>
  static Batch from_mask(const Eigen::MatrixBase<Derived>& mask) {
    const Index batch = mask.rows(), seq_len = mask.cols();
    check_positive("batch", batch);
    check_positive("seq_len", seq_len);
    std::vector<Index> lengths(static_cast<std::size_t>(batch));
    std::vector<std::uint8_t> keys(static_cast<std::size_t>(batch * seq_len));
    bool prefix = true;
    for (Index b = 0; b < batch; ++b) {
      Index count = 0;
      for (Index s = 0; s < seq_len; ++s) {
        const auto v = mask(b, s);
        if (v != 0 && v != 1)
          throw ShapeError("Batch: attention mask value at [" + detail::to_string(b) + ", " +
                           detail::to_string(s) + "] is not 0 or 1");
        keys[static_cast<std::size_t>(b * seq_len + s)] = static_cast<std::uint8_t>(v);
        if (v == 1) {
          if (count != s) prefix = false;
          ++count;
        }
      }
      if (count == 0) prefix = false;
      lengths[static_cast<std::size_t>(b)] = count;
    }
    if (prefix) keys.clear();
    return Batch(seq_len, std::move(lengths), std::move(keys));
  }

  /// Sequences [first, first + count) as a batch of their own, written into `out`, whose storage
  /// is reused: slicing into the same `out` again allocates nothing once it has held as many
  /// sequences. Throws ShapeError when the range is empty or runs outside 0..batch().
  void slice(Index first, Index count, Batch& out) const {
    if (count < 1 || first < 0 || first > batch() - count)
      throw ShapeError("Batch: slice of " + detail::to_string(count) + " sequence(s) from " +
                       detail::to_string(first) + " is outside the batch of " +
                       detail::to_string(batch()));
    const auto at = [](const auto& v, Index i) {
      return v.begin() + static_cast<std::ptrdiff_t>(i);
    };
    out.seq_len_ = seq_len_;
    out.lengths_.assign(at(lengths_, first), at(lengths_, first + count));
    if (keys_.empty())
      out.keys_.clear();
    else
      out.keys_.assign(at(keys_, first * seq_len_), at(keys_, (first + count) * seq_len_));
  }
  /// Sequences [first, first + count) as a batch of their own.
  Batch slice(Index first, Index count) const {
    Batch out(seq_len_, {}, {});
    slice(first, count, out);
    return out;
  }

  Index batch() const { return static_cast<Index>(lengths_.size()); }
  Index seq_len() const { return seq_len_; }
  Index tokens() const { return batch() * seq_len_; }
  /// Number of valid keys of sequence b.
  Index length(Index b) const { return lengths_[static_cast<std::size_t>(b)]; }
  const std::vector<Index>& lengths() const { return lengths_; }
  /// True when some sequence's valid keys are not a prefix: use key_valid() instead of length().
  bool has_key_mask() const { return !keys_.empty(); }
  /// Whether key s of sequence b may be attended to.
  bool key_valid(Index b, Index s) const {
    return keys_.empty() ? s < length(b) : keys_[static_cast<std::size_t>(b * seq_len_ + s)] != 0;
  }

 private:
  Batch(Index seq_len, std::vector<Index> lengths, std::vector<std::uint8_t> keys)
      : seq_len_(seq_len), lengths_(std::move(lengths)), keys_(std::move(keys)) {}

  static void check_positive(const char* what, Index value) {
    if (value < 1)
      throw ShapeError(std::string("Batch: ") + what + " must be at least 1, got " +
                       detail::to_string(value));
  }

  Index seq_len_;
  std::vector<Index> lengths_;
  std::vector<std::uint8_t> keys_;  // (batch, seq_len) when not every mask is a prefix
};

}  // namespace shareformer
