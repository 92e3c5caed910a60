// SPDX-License-Identifier: MIT
// `shareformer run`: token ids in, last_hidden_state and pooler_output out, both safetensors.
#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <shareformer/core/error.hpp>
#include <shareformer/core/parallel.hpp>
#include <shareformer/io/safetensors.hpp>
#include <shareformer/layers/workspace.hpp>
#include <shareformer/models/encoder.hpp>
#include <shareformer/ops/gemm.hpp>
#include <string>
#include <vector>

#include "commands.hpp"
#include "model_source.hpp"

namespace shareformer::cli {

namespace {

// The inputs of one forward, read from a safetensors file.
struct Inputs {
  IdMatrix input_ids;       // (batch, seq_len)
  IdMatrix token_type_ids;  // (batch, seq_len), or empty for all zeros
  IdMatrix attention_mask;  // (batch, seq_len), or empty for all ones
};

// Tensor `name` as a (batch, seq_len) id matrix; `rows` / `cols` of -1 take the tensor's own.
// Throws FormatError for a non-integer dtype, ShapeError for another rank or shape.
IdMatrix read_ids(const io::SafetensorsFile& file, const std::string& name, Index rows,
                  Index cols) {
  const io::TensorInfo& t = file.info(name);
  if (t.shape.size() != 2 || t.shape[0] < 1 || t.shape[1] < 1)
    throw ShapeError(
        fmt::format("{}: tensor '{}' has shape {}, expected [batch, seq_len] with both at least 1",
                    file.name(), name, io::detail::format_shape(t.shape)));
  if (rows >= 0 && (t.shape[0] != rows || t.shape[1] != cols))
    throw ShapeError(fmt::format("{}: tensor '{}' has shape {}, expected [{}, {}] like input_ids",
                                 file.name(), name, io::detail::format_shape(t.shape), rows, cols));
  if (io::is_floating(t.dtype))
    throw FormatError(fmt::format("{}: tensor '{}' has dtype {}, expected an integer dtype (I64)",
                                  file.name(), name, io::dtype_name(t.dtype)));
  const std::vector<std::int64_t> values = file.values<std::int64_t>(name);
  return Eigen::Map<const IdMatrix>(values.data(), static_cast<Index>(t.shape[0]),
                                    static_cast<Index>(t.shape[1]));
}

Inputs read_inputs(const std::string& path) {
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  Inputs in;
  if (!file.contains("input_ids")) throw FormatError(path + ": no tensor 'input_ids'");
  in.input_ids = read_ids(file, "input_ids", -1, -1);
  const Index rows = in.input_ids.rows(), cols = in.input_ids.cols();
  if (file.contains("token_type_ids"))
    in.token_type_ids = read_ids(file, "token_type_ids", rows, cols);
  if (file.contains("attention_mask"))
    in.attention_mask = read_ids(file, "attention_mask", rows, cols);
  return in;
}

}  // namespace

CLI::App* RunCommand::add(CLI::App& app) {
  CLI::App* sub = app.add_subcommand(
      "run",
      "Run a model on token ids. The input safetensors file holds input_ids (I64 [batch, seq_len]) "
      "and optionally attention_mask (default all ones) and token_type_ids (default zeros); the "
      "output file gets last_hidden_state (F32 [batch, seq_len, d_model]) and pooler_output (F32 "
      "[batch, d_model]). On any error nothing is written and an existing output file is kept.");
  sub->add_option("--model", model,
                  "A Hugging Face model directory (config.json + model.safetensors) or a "
                  "shareformer model file")
      ->required();
  sub->add_option("--input", input, "Input safetensors file")->required();
  sub->add_option("--output", output, "Output safetensors file (replaced atomically)")->required();
  sub->add_option("--threads", threads, "Threads (0 = all hardware threads)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  add_weights_option(sub, weights, static_cast<std::size_t>(ops::bf16_gemm_max_rows));
  return sub;
}

int RunCommand::run() const {
  using Clock = std::chrono::steady_clock;
  // Inputs first: a bad input file is reported before a large model is read.
  const Inputs in = read_inputs(input);
  Encoder<float> encoder = load_encoder(model);
  apply_weights_option(encoder, weights);

  // The forward; nothing is written unless it succeeds.
  EncoderOutput<float> out;
  Workspace<float> ws;
  const auto t0 = Clock::now();
  try {
    encoder.forward(in.input_ids, in.token_type_ids, in.attention_mask, out, ws, threads);
  } catch (const ShapeError& e) {
    throw ShapeError(input + ": " + e.what());  // the inputs do not fit the model
  }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();

  const std::int64_t batch = in.input_ids.rows(), seq_len = in.input_ids.cols(),
                     d_model = encoder.config().d_model;
  const auto values = [](const RowMatrix<float>& m) {
    return std::vector<float>(m.data(), m.data() + m.size());
  };
  io::SafetensorsWriter writer;
  writer.add("last_hidden_state", {batch, seq_len, d_model}, values(out.last_hidden_state));
  writer.add("pooler_output", {batch, d_model}, values(out.pooler_output));
  writer.write(output);

  std::cout << fmt::format(
      "{}: last_hidden_state [{}, {}, {}], pooler_output [{}, {}]{} ({:.1f} ms, {} threads)\n",
      output, batch, seq_len, d_model, batch, d_model,
      encoder.has_pooler() ? "" : " (zeros: the model has no pooler)", ms,
      shareformer::detail::resolve_threads(threads));
  return 0;
}

}  // namespace shareformer::cli
