// SPDX-License-Identifier: MIT
// Fixtures and checks for the CLI tests: a tiny Hub-layout BERT, input files good and bad, and a
// comparison of `shareformer run` output with expected outputs.
//
//   cli_helper make-model DIR           tiny BERT: config.json + model.safetensors, random weights
//   cli_helper make-input FILE KIND     inputs for that model; KIND: good, out-of-vocab,
//                                       too-long, mask-mismatch, float-ids, no-ids
//   cli_helper compare OUT EXPECTED TOL last_hidden_state on positions where EXPECTED's
//                                       attention_mask is 1, and pooler_output, within TOL
//   cli_helper differ OUT OTHER         exit 0 when the two last_hidden_states differ
//   cli_helper convert DIR FILE         the Hugging Face model in DIR saved in the library's
//                                       format
//   cli_helper make-shared FILE POLICY  the tiny model's config, its stack shared as POLICY
//                                       (none, ffn, attention, all), random weights, in the
//                                       library's format
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <random>
#include <shareformer/io/huggingface.hpp>
#include <shareformer/io/model_io.hpp>
#include <shareformer/io/safetensors.hpp>
#include <string>
#include <vector>

namespace io = shareformer::io;

namespace {

// The tiny model's dimensions.
constexpr std::int64_t vocab_size = 50, d_model = 8, n_heads = 2, d_ff = 16, n_layers = 2,
                       max_pos = 16;

std::vector<float> random_values(std::mt19937_64& rng, std::int64_t n, float stddev,
                                 float mean = 0.0f) {
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

int make_model(const std::string& dir) {
  std::ofstream config(dir + "/config.json");
  config << "{\n  \"architectures\": [\"BertModel\"],\n  \"hidden_act\": \"gelu\",\n"
         << "  \"hidden_size\": " << d_model << ",\n  \"intermediate_size\": " << d_ff << ",\n"
         << "  \"layer_norm_eps\": 1e-12,\n  \"max_position_embeddings\": " << max_pos << ",\n"
         << "  \"model_type\": \"bert\",\n  \"num_attention_heads\": " << n_heads << ",\n"
         << "  \"num_hidden_layers\": " << n_layers << ",\n  \"type_vocab_size\": 2,\n"
         << "  \"vocab_size\": " << vocab_size << "\n}\n";
  if (!config) return std::fprintf(stderr, "cannot write %s/config.json\n", dir.c_str()), 1;

  std::mt19937_64 rng(7);
  io::SafetensorsWriter w;
  const auto linear = [&](const std::string& name, std::int64_t in, std::int64_t out) {
    w.add(name + ".weight", {out, in}, random_values(rng, out * in, 0.2f));
    w.add(name + ".bias", {out}, random_values(rng, out, 0.02f));
  };
  const auto norm = [&](const std::string& name, std::int64_t n) {
    w.add(name + ".weight", {n}, random_values(rng, n, 0.05f, 1.0f));
    w.add(name + ".bias", {n}, random_values(rng, n, 0.02f));
  };
  w.add("embeddings.word_embeddings.weight", {vocab_size, d_model},
        random_values(rng, vocab_size * d_model, 0.5f));
  w.add("embeddings.position_embeddings.weight", {max_pos, d_model},
        random_values(rng, max_pos * d_model, 0.5f));
  w.add("embeddings.token_type_embeddings.weight", {2, d_model},
        random_values(rng, 2 * d_model, 0.5f));
  norm("embeddings.LayerNorm", d_model);
  for (std::int64_t l = 0; l < n_layers; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l);
    linear(p + ".attention.self.query", d_model, d_model);
    linear(p + ".attention.self.key", d_model, d_model);
    linear(p + ".attention.self.value", d_model, d_model);
    linear(p + ".attention.output.dense", d_model, d_model);
    norm(p + ".attention.output.LayerNorm", d_model);
    linear(p + ".intermediate.dense", d_model, d_ff);
    linear(p + ".output.dense", d_ff, d_model);
    norm(p + ".output.LayerNorm", d_model);
  }
  linear("pooler.dense", d_model, d_model);
  w.write(dir + "/model.safetensors");
  return 0;
}

int make_input(const std::string& path, const std::string& kind) {
  const std::int64_t batch = 2, seq = kind == "too-long" ? max_pos + 1 : 5;
  std::vector<std::int64_t> ids(static_cast<std::size_t>(batch * seq)), mask(ids.size(), 1);
  for (std::size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<std::int64_t>((7 * i + 3) % vocab_size);
  mask[ids.size() - 1] = 0;  // the second sequence ends with padding
  if (kind == "out-of-vocab") ids[3] = vocab_size;
  io::SafetensorsWriter w;
  if (kind == "float-ids") {
    w.add("input_ids", {batch, seq}, std::vector<float>(ids.begin(), ids.end()));
  } else if (kind != "no-ids") {
    w.add("input_ids", {batch, seq}, ids);
  }
  if (kind == "mask-mismatch")
    w.add("attention_mask", {batch, seq - 1},
          std::vector<std::int64_t>(static_cast<std::size_t>(batch * (seq - 1)), 1));
  else
    w.add("attention_mask", {batch, seq}, mask);
  if (kind != "good" && kind != "out-of-vocab" && kind != "too-long" && kind != "mask-mismatch" &&
      kind != "float-ids" && kind != "no-ids")
    return std::fprintf(stderr, "unknown input kind '%s'\n", kind.c_str()), 2;
  w.write(path);
  return 0;
}

int convert(const std::string& dir, const std::string& file) {
  shareformer::io::save_model(file, io::load_hf_model<float>(dir));
  return 0;
}

int make_shared(const std::string& file, const std::string& policy) {
  shareformer::EncoderConfig c;
  c.vocab_size = vocab_size;
  c.embedding_size = c.d_model = d_model;
  c.n_heads = n_heads;
  c.d_ff = d_ff;
  c.n_layers = n_layers;
  c.max_position_embeddings = max_pos;
  shareformer::SlotPlan plan;
  if (policy == "none")
    plan = shareformer::Unshared::plan(n_layers);
  else if (policy == "ffn")
    plan = shareformer::SharedFfn::plan(n_layers);
  else if (policy == "attention")
    plan = shareformer::SharedAttention::plan(n_layers);
  else if (policy == "all")
    plan = shareformer::SharedAll::plan(n_layers);
  else
    return std::fprintf(stderr, "unknown policy '%s'\n", policy.c_str()), 2;
  shareformer::Encoder<float> encoder(c, shareformer::LayerMap::from_plan(plan));
  encoder.randomize(11, 0.2);
  shareformer::io::save_model(file, encoder);
  return 0;
}

// Largest |a - b| over the elements selected by `use(i)`.
template <typename Use>
double max_diff(const std::vector<float>& a, const std::vector<float>& b, Use use) {
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!use(i)) continue;
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (!(d <= worst)) worst = d;  // NaN makes the check fail
  }
  return worst;
}

int compare(const std::string& out_path, const std::string& expected_path, double tol) {
  const io::SafetensorsFile out = io::SafetensorsFile::open(out_path);
  const io::SafetensorsFile expected = io::SafetensorsFile::open(expected_path);
  int status = 0;
  for (const char* name : {"last_hidden_state", "pooler_output"}) {
    const io::TensorInfo& got = out.info(name);
    const io::TensorInfo& want = expected.info(name);
    if (got.dtype != io::Dtype::F32 || got.shape != want.shape) {
      std::fprintf(stderr, "%s: dtype %s shape %s, expected F32 %s\n", name,
                   io::dtype_name(got.dtype), io::detail::format_shape(got.shape).c_str(),
                   io::detail::format_shape(want.shape).c_str());
      return 1;
    }
  }
  const io::TensorInfo& hidden = expected.info("last_hidden_state");
  const std::int64_t tokens = hidden.shape[0] * hidden.shape[1], width = hidden.shape[2];
  const std::vector<std::int64_t> mask =
      expected.contains("attention_mask")
          ? expected.values<std::int64_t>("attention_mask")
          : std::vector<std::int64_t>(static_cast<std::size_t>(tokens), 1);
  const double hidden_diff =
      max_diff(out.values<float>("last_hidden_state"), expected.values<float>("last_hidden_state"),
               [&](std::size_t i) { return mask[i / static_cast<std::size_t>(width)] != 0; });
  const double pooler_diff =
      max_diff(out.values<float>("pooler_output"), expected.values<float>("pooler_output"),
               [](std::size_t) { return true; });
  std::printf(
      "max |diff|: last_hidden_state %.3g (unmasked positions), pooler_output %.3g, tolerance "
      "%.3g\n",
      hidden_diff, pooler_diff, tol);
  if (!(hidden_diff <= tol) || !(pooler_diff <= tol)) status = 1;
  return status;
}

// Exit 0 when last_hidden_state differs somewhere between the two outputs (to show an option
// changed the computation), 1 when they are identical.
int differ(const std::string& a_path, const std::string& b_path) {
  const io::SafetensorsFile a = io::SafetensorsFile::open(a_path);
  const io::SafetensorsFile b = io::SafetensorsFile::open(b_path);
  const double diff =
      max_diff(a.values<float>("last_hidden_state"), b.values<float>("last_hidden_state"),
               [](std::size_t) { return true; });
  std::printf("max |diff|: last_hidden_state %.3g (must be > 0)\n", diff);
  return diff > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string command = argc > 1 ? argv[1] : "";
    if (command == "make-model" && argc == 3) return make_model(argv[2]);
    if (command == "make-input" && argc == 4) return make_input(argv[2], argv[3]);
    if (command == "compare" && argc == 5) return compare(argv[2], argv[3], std::stod(argv[4]));
    if (command == "differ" && argc == 4) return differ(argv[2], argv[3]);
    if (command == "convert" && argc == 4) return convert(argv[2], argv[3]);
    if (command == "make-shared" && argc == 4) return make_shared(argv[2], argv[3]);
    std::fprintf(
        stderr,
        "usage: cli_helper make-model DIR | make-input FILE KIND | compare OUT EXPECTED TOL |\n"
        "       differ OUT OTHER | convert DIR FILE | make-shared FILE POLICY\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cli_helper: %s\n", e.what());
    return 1;
  }
}
