// SPDX-License-Identifier: MIT
// Encoder<T>: a BERT-family encoder (embeddings, shared layer stack, pooler); ALBERT and BERT.
#pragma once

#include <cstdint>
#include <random>
#include <shareformer/core/batch.hpp>
#include <shareformer/core/encoder_config.hpp>
#include <shareformer/core/error.hpp>
#include <shareformer/core/parallel.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/count/accounting.hpp>
#include <shareformer/layers/layer_norm.hpp>
#include <shareformer/layers/linear.hpp>
#include <shareformer/layers/workspace.hpp>
#include <shareformer/models/stack.hpp>
#include <shareformer/sharing/policies.hpp>
#include <string>
#include <utility>

namespace shareformer {

/// Token ids, token types and attention masks: (batch, seq_len), row-major, int64 as in PyTorch.
using IdMatrix = Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// What an encoder's forward returns (Hugging Face's `BaseModelOutputWithPooling`).
template <typename T>
struct EncoderOutput {
  RowMatrix<T> last_hidden_state;  ///< (batch * seq_len, d_model): row b * seq_len + s
  RowMatrix<T> pooler_output;      ///< (batch, d_model): tanh(W h[b, 0] + c)
};

/// The layer map of a config's own architecture: ALBERT's num_hidden_groups groups of
/// inner_group_num blocks over n_layers * inner_group_num block applications; BERT unshared.
/// Throws ConfigError on an invalid config.
inline LayerMap default_layer_map(const EncoderConfig& config) {
  config.validate();
  if (config.model_type == ModelType::Albert)
    return LayerMap::from_plan(
        grouped_plan(config.stack_layers(), config.num_hidden_groups, config.inner_group_num));
  return LayerMap::from_plan(Unshared::plan(config.stack_layers()));
}

/// A BERT-family encoder: word + position + token-type embeddings of size E with a LayerNorm,
/// (ALBERT) a Linear E -> d_model, a Stack<LayerMap, T> of post-LN blocks whose sharing is any
/// layer map, and the pooler tanh(Linear(h[:, 0])). `forward` is const and re-entrant.
///
/// A model may lack pooler weights (Hugging Face's *ForMaskedLM checkpoints): has_pooler() is then
/// false, the pooler's weights are zero and pooler_output is all zeros. The pooler's parameters
/// are still counted, as Hugging Face's AlbertModel / BertModel would create them.
template <typename T = float>
class Encoder {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "Encoder<T>: T must be float or double");

 public:
  using Scalar = T;

  /// An encoder with the config's own sharing (see default_layer_map), zero weights and LayerNorm
  /// gains 1. Throws ConfigError on an invalid config.
  explicit Encoder(const EncoderConfig& config) : Encoder(config, default_layer_map(config)) {}

  /// An encoder whose stack of config.stack_layers() blocks is shared as `map` says, with zero
  /// weights. Throws ConfigError on an invalid config or a map of another length.
  Encoder(const EncoderConfig& config, LayerMap map)
      : config_((config.validate(), config)),
        word_(RowMatrix<T>::Zero(config.vocab_size, config.embedding_size)),
        position_(RowMatrix<T>::Zero(config.max_position_embeddings, config.embedding_size)),
        token_type_(RowMatrix<T>::Zero(config.type_vocab_size, config.embedding_size)),
        embedding_norm_(config.embedding_size, config.eps),
        projection_(config.model_type == ModelType::Albert
                        ? Linear<T>(config.embedding_size, config.d_model)
                        : Linear<T>()),
        stack_(config.block(), config.stack_layers(), std::move(map)),
        pooler_(config.d_model, config.d_model) {}

  const EncoderConfig& config() const { return config_; }
  /// The layer -> slot tables of the stack.
  const LayerMap& layer_map() const { return stack_.policy(); }

  /// (vocab_size, E)
  const RowMatrix<T>& word_embeddings() const { return word_; }
  RowMatrix<T>& word_embeddings() { return word_; }
  /// (max_position_embeddings, E)
  const RowMatrix<T>& position_embeddings() const { return position_; }
  RowMatrix<T>& position_embeddings() { return position_; }
  /// (type_vocab_size, E)
  const RowMatrix<T>& token_type_embeddings() const { return token_type_; }
  RowMatrix<T>& token_type_embeddings() { return token_type_; }
  /// The LayerNorm over the summed embeddings (size E, eps = layer_norm_eps).
  const LayerNorm<T>& embedding_norm() const { return embedding_norm_; }
  LayerNorm<T>& embedding_norm() { return embedding_norm_; }
  /// Whether the model projects E -> d_model (ALBERT's embedding_hidden_mapping_in).
  bool has_embedding_projection() const { return config_.model_type == ModelType::Albert; }
  /// ALBERT's (E, d_model) projection; an empty Linear for BERT.
  const Linear<T>& embedding_projection() const { return projection_; }
  Linear<T>& embedding_projection() { return projection_; }
  /// The layer stack.
  const Stack<LayerMap, T>& stack() const { return stack_; }
  Stack<LayerMap, T>& stack() { return stack_; }
  /// The pooler's (d_model, d_model) Linear.
  const Linear<T>& pooler() const { return pooler_; }
  Linear<T>& pooler() { return pooler_; }
  /// False for a model loaded without pooler weights (pooler_output is then zero).
  bool has_pooler() const { return has_pooler_; }
  void set_has_pooler(bool value) { has_pooler_ = value; }

  /// Unique parameters, each distinct tensor once (equals count::encoder_parameters and PyTorch's
  /// sum(p.numel()) over Hugging Face's AlbertModel / BertModel).
  Index parameter_count() const {
    Index n =
        word_.size() + position_.size() + token_type_.size() + embedding_norm_.parameter_count();
    if (has_embedding_projection()) n += projection_.parameter_count();
    return n + stack_.parameter_count() + pooler_.parameter_count();
  }
  /// The same encoder's parameters with no sharing in the stack.
  Index unshared_parameter_count() const {
    return count::encoder_parameters(config_, config_.stack_layers(), config_.stack_layers());
  }

  /// Calls f on each distinct Linear once: the embedding projection (ALBERT), the stack's, the
  /// pooler.
  template <typename F>
  void for_each_linear(F&& f) {
    if (has_embedding_projection()) f(projection_);
    stack_.for_each_linear(f);
    f(pooler_);
  }

  /// Linear::pack_weights on every Linear: each weight also kept packed in the order the
  /// product kernel streams it (faster when the weights do not stay in cache; costs a copy of the
  /// weights). Call again after changing weights through mutable accessors, which drop the copies.
  void pack_weights() {
    for_each_linear([](Linear<T>& linear) { linear.pack_weights(); });
  }

  /// Linear::use_bf16_weights on every Linear (embeddings stay float): each weight rounded to
  /// bfloat16 once, and products over few tokens stream half the bytes. float only.
  void use_bf16_weights() {
    for_each_linear([](Linear<T>& linear) { linear.use_bf16_weights(); });
  }

  /// Linear::use_bf16_products on every Linear (embeddings stay float): every product in bfloat16
  /// with float sums (weights and activations rounded to bfloat16), on AVX512-BF16's dot products
  /// where the build has them (ops::has_bf16_dot). A different precision from float. float only.
  void use_bf16_products() {
    for_each_linear([](Linear<T>& linear) { linear.use_bf16_products(); });
  }

  /// Random weights, deterministic for a seed: embeddings N(0, 1), Linears N(0, stddev^2) with
  /// biases N(0, bias_stddev^2), LayerNorm gains 1 + N(0, norm_stddev^2) and biases N(0,
  /// norm_stddev^2). Sets has_pooler().
  void randomize(std::uint64_t seed, double stddev = 0.02, double bias_stddev = 0.02,
                 double norm_stddev = 0.0) {
    std::mt19937_64 rng(seed);
    detail::fill_normal(word_, rng, 1.0);
    detail::fill_normal(position_, rng, 1.0);
    detail::fill_normal(token_type_, rng, 1.0);
    embedding_norm_.randomize(rng, norm_stddev);
    if (has_embedding_projection()) projection_.randomize(rng, stddev, bias_stddev);
    pooler_.randomize(rng, stddev, bias_stddev);
    stack_.randomize(rng(), stddev, bias_stddev, norm_stddev);
    has_pooler_ = true;
  }

  /// Runs the encoder. input_ids (batch, seq_len); token_type_ids and attention_mask the same
  /// shape, or empty (0 x 0) for all zeros / all ones. Mask 1 = attend, 0 = padding: padded keys
  /// get no weight (Hugging Face's additive mask), padded rows are computed but meaningless.
  /// Results fill `out` (resized only when its shapes differ); ws holds the scratch and is reused
  /// across calls; threads = 0 means hardware_threads(). Throws ShapeError on an empty input, a
  /// token id outside [0, vocab_size), a token type outside [0, type_vocab_size), seq_len >
  /// max_position_embeddings, inputs of different shapes or a mask value other than 0 or 1.
  /// A sequence whose mask is all 0 gets zero attention outputs (Hugging Face would attend
  /// uniformly to its padding); it has no position whose output means anything either way.
  void forward(Eigen::Ref<const IdMatrix> input_ids, Eigen::Ref<const IdMatrix> token_type_ids,
               Eigen::Ref<const IdMatrix> attention_mask, EncoderOutput<T>& out, Workspace<T>& ws,
               int threads = 0) const {
    check_inputs(input_ids, token_type_ids, attention_mask);
    threads = detail::resolve_threads(threads);
    const Index batch_size = input_ids.rows(), seq_len = input_ids.cols();
    const Index tokens = batch_size * seq_len, e = config_.embedding_size, d = config_.d_model;
    const Batch batch = attention_mask.size() == 0 ? Batch::uniform(batch_size, seq_len)
                                                   : Batch::from_mask(attention_mask);
    const BlockConfig block = stack_.config();
    ws.prepare(tokens, block);
    resize(out.last_hidden_state, tokens, d);
    resize(out.pooler_output, batch_size, d);

    // Embeddings are summed where the LayerNorm runs: in the output for BERT (E = d_model), in a
    // workspace buffer for ALBERT, which projects them into the output.
    RowMatrix<T> spill;
    MatrixRef<T> embedded = has_embedding_projection() ? embedding_buffer(ws, spill, tokens, e)
                                                       : MatrixRef<T>(out.last_hidden_state);
    // (tokens, E): word + token type + position, the order Hugging Face adds them in
    for (Index b = 0; b < batch_size; ++b)
      for (Index s = 0; s < seq_len; ++s) {
        const Index type =
            token_type_ids.size() == 0 ? 0 : static_cast<Index>(token_type_ids(b, s));
        auto row = embedded.row(b * seq_len + s);
        row = word_.row(static_cast<Index>(input_ids(b, s)));
        row += token_type_.row(type);
        row += position_.row(s);
      }
    embedding_norm_.forward(embedded);
    if (has_embedding_projection()) projection_.forward(embedded, out.last_hidden_state, threads);

    stack_.forward(out.last_hidden_state, batch, ws, threads);

    // (batch, d_model): the first token of each sequence, gathered into a workspace buffer
    Eigen::Map<RowMatrix<T>> first(ws.normed.data(), batch_size, d);
    for (Index b = 0; b < batch_size; ++b) first.row(b) = out.last_hidden_state.row(b * seq_len);
    pooler_.forward(first, out.pooler_output, threads);
    out.pooler_output = out.pooler_output.array().tanh().matrix();
  }

  /// As above, allocating the output and the scratch.
  EncoderOutput<T> forward(Eigen::Ref<const IdMatrix> input_ids,
                           Eigen::Ref<const IdMatrix> token_type_ids = IdMatrix(),
                           Eigen::Ref<const IdMatrix> attention_mask = IdMatrix(),
                           int threads = 0) const {
    EncoderOutput<T> out;
    Workspace<T> ws;
    forward(input_ids, token_type_ids, attention_mask, out, ws, threads);
    return out;
  }

 private:
  static void resize(RowMatrix<T>& m, Index rows, Index cols) {
    if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
  }

  /// A (tokens, E) view of workspace memory no block reads before the stack runs (the FFN's inner
  /// buffer or the fused QKV buffer), or of `spill` when E is larger than both.
  static MatrixRef<T> embedding_buffer(Workspace<T>& ws, RowMatrix<T>& spill, Index tokens,
                                       Index e) {
    RowMatrix<T>* host = e <= ws.inner.cols() ? &ws.inner : e <= ws.qkv.cols() ? &ws.qkv : nullptr;
    if (host == nullptr) {
      spill.resize(tokens, e);
      return spill;
    }
    return Eigen::Map<RowMatrix<T>>(host->data(), tokens, e);
  }

  void check_inputs(const Eigen::Ref<const IdMatrix>& ids, const Eigen::Ref<const IdMatrix>& types,
                    const Eigen::Ref<const IdMatrix>& mask) const {
    using detail::to_string;
    const auto shape = [](const Eigen::Ref<const IdMatrix>& m) {
      return "[" + to_string(m.rows()) + ", " + to_string(m.cols()) + "]";
    };
    const auto at = [](Index b, Index s) { return "[" + to_string(b) + ", " + to_string(s) + "]"; };
    if (ids.rows() < 1 || ids.cols() < 1)
      throw ShapeError("Encoder: input_ids has shape " + shape(ids) +
                       ", expected at least one sequence of at least one token");
    if (ids.cols() > config_.max_position_embeddings)
      throw ShapeError("Encoder: sequence length " + to_string(ids.cols()) +
                       " exceeds max_position_embeddings (" +
                       to_string(config_.max_position_embeddings) + ")");
    if (types.size() != 0 && (types.rows() != ids.rows() || types.cols() != ids.cols()))
      throw ShapeError("Encoder: token_type_ids has shape " + shape(types) +
                       ", expected the shape of input_ids " + shape(ids));
    if (mask.size() != 0 && (mask.rows() != ids.rows() || mask.cols() != ids.cols()))
      throw ShapeError("Encoder: attention_mask has shape " + shape(mask) +
                       ", expected the shape of input_ids " + shape(ids));
    for (Index b = 0; b < ids.rows(); ++b)
      for (Index s = 0; s < ids.cols(); ++s) {
        const std::int64_t id = ids(b, s);
        if (id < 0 || id >= config_.vocab_size)
          throw ShapeError("Encoder: input_ids" + at(b, s) + " = " + std::to_string(id) +
                           " is outside the vocabulary [0, " + to_string(config_.vocab_size) + ")");
        if (types.size() != 0 && (types(b, s) < 0 || types(b, s) >= config_.type_vocab_size))
          throw ShapeError("Encoder: token_type_ids" + at(b, s) + " = " +
                           std::to_string(types(b, s)) + " is outside [0, " +
                           to_string(config_.type_vocab_size) + ")");
        if (mask.size() != 0 && mask(b, s) != 0 && mask(b, s) != 1)
          throw ShapeError("Encoder: attention_mask" + at(b, s) + " = " +
                           std::to_string(mask(b, s)) + ", expected 0 or 1");
      }
  }

  EncoderConfig config_;
  RowMatrix<T> word_;
  RowMatrix<T> position_;
  RowMatrix<T> token_type_;
  LayerNorm<T> embedding_norm_;
  Linear<T> projection_;
  Stack<LayerMap, T> stack_;
  Linear<T> pooler_;
  bool has_pooler_ = true;
};

/// ALBERT (Lan et al.): factorised embeddings and grouped shared layers. Load one with
/// io::load_hf_model or build it from an EncoderConfig with model_type Albert.
template <typename T = float>
using AlbertModel = Encoder<T>;

/// BERT and BERT-architecture encoders (MiniLM, ...): one distinct block per layer by default.
template <typename T = float>
using BertModel = Encoder<T>;

}  // namespace shareformer
