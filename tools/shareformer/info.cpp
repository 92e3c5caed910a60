// SPDX-License-Identifier: MIT
// `shareformer info`: a model's configuration and what each sharing policy would make of it.
#include <fmt/format.h>

#include <cstdint>
#include <iostream>
#include <nlohmann/json.hpp>
#include <shareformer/core/error.hpp>
#include <shareformer/count/accounting.hpp>

#include "commands.hpp"
#include "model_source.hpp"
#include "output.hpp"
#include "policy_names.hpp"
#include "presets.hpp"

namespace shareformer::cli {

namespace {

// Parameters, bytes and FLOPs of one encoder under one stack layout.
struct Figures {
  Index parameters = 0;
  Index unshared = 0;
  std::int64_t weight_bytes = 0;
};

Figures figures(const EncoderConfig& c, Index attention_slots, Index ffn_slots) {
  const Index layers = c.stack_layers();
  Figures f;
  f.parameters = count::encoder_parameters(c, attention_slots, ffn_slots);
  f.unshared = count::encoder_parameters(c, layers, layers);
  f.weight_bytes = count::weight_bytes<float>(f.parameters);
  return f;
}

// FLOPs of a whole encoder forward: the stack, plus ALBERT's E -> d_model projection and the
// pooler as matmuls; embedding sums and LayerNorm, pooler bias and tanh as element-wise work.
count::FlopCount encoder_flops(const EncoderConfig& c, Index batch, Index seq_len) {
  count::FlopCount flops = count::forward_flops(c.block(), c.stack_layers(), batch, seq_len);
  const std::int64_t t = static_cast<std::int64_t>(batch) * seq_len, e = c.embedding_size,
                     h = c.d_model, b = batch;
  if (c.model_type == ModelType::Albert) flops.matmul += 2 * t * e * h, flops.elementwise += t * h;
  flops.matmul += 2 * b * h * h;
  flops.elementwise += 2 * t * e + 5 * t * e + 2 * b * h;
  return flops;
}

std::string describe_source(const ModelSource& m) {
  if (m.kind == SourceKind::Preset)
    return fmt::format("{} (preset: {})", m.name, find_preset(m.name)->source);
  if (m.kind == SourceKind::HfDirectory)
    return fmt::format("{} (Hugging Face directory{})", m.name,
                       m.weights.empty() ? ", no weights" : "");
  return fmt::format("{} ({})", m.name, to_string(m.kind));
}

void print_text(const ModelSource& m, Index batch, Index seq_len) {
  const EncoderConfig& c = m.config;
  const Figures own = figures(c, m.attention_slots, m.ffn_slots);
  const count::EncoderExtras extras = count::encoder_extras(c);

  // The configuration, one field a line.
  std::cout << describe_source(m) << '\n';
  const auto field = [](const char* key, const std::string& value) {
    std::cout << fmt::format("  {:<25} {}\n", key, value);
  };
  field("model_type", to_string(c.model_type));
  field("vocab_size", grouped(c.vocab_size));
  if (c.model_type == ModelType::Albert) field("embedding_size", grouped(c.embedding_size));
  field("d_model", grouped(c.d_model));
  field("n_layers", c.model_type == ModelType::Albert && c.inner_group_num > 1
                        ? fmt::format("{} x {} inner = {} blocks", c.n_layers, c.inner_group_num,
                                      c.stack_layers())
                        : std::to_string(c.n_layers));
  field("n_heads", fmt::format("{} (d_head {})", c.n_heads, c.d_model / c.n_heads));
  field("d_ff", grouped(c.d_ff));
  field("activation", to_string(c.activation));
  field("max_position_embeddings", grouped(c.max_position_embeddings));
  field("type_vocab_size", grouped(c.type_vocab_size));
  field("layer_norm_eps", fmt::format("{:g}", c.eps));
  if (c.model_type == ModelType::Albert)
    field("groups x inner", fmt::format("{} x {}", c.num_hidden_groups, c.inner_group_num));
  field("sharing", fmt::format("{} ({} attention and {} FFN sub-layers)", m.sharing,
                               m.attention_slots, m.ffn_slots));
  field("parameters", fmt::format("{} ({} MiB as fp32)", grouped(own.parameters),
                                  decimal(mib(own.weight_bytes))));
  std::cout << '\n';

  // One column per policy; the model's own sharing is starred.
  const count::FlopCount flops = encoder_flops(c, batch, seq_len);
  std::vector<std::string> header{""};
  std::vector<std::string> unique{"unique parameters"}, unshared{"as if unshared"},
      bytes{"weight MiB (fp32)"}, gflops{"GFLOPs per forward"};
  for (const char* name : kPolicyNames) {
    const SlotPlan plan = policy_plan(name, c.stack_layers());
    const Figures f = figures(c, plan.attention_slots, plan.ffn_slots);
    const bool own_policy = name == m.sharing;
    header.push_back(own_policy ? std::string(name) + "*" : std::string(name));
    unique.push_back(grouped(f.parameters));
    unshared.push_back(grouped(f.unshared));
    bytes.push_back(decimal(mib(f.weight_bytes)));
    gflops.push_back(decimal(static_cast<double>(flops.matmul) / 1e9));
  }
  Table table(header);
  table.add(unique);
  table.add(unshared);
  table.add(bytes);
  table.add(gflops);
  std::cout << table.str();
  std::cout << fmt::format(
      "{}embeddings ({}), {}pooler ({})\n"
      "counted once in every column. GFLOPs: the matmuls of one forward at batch {} x seq_len {},\n"
      "the same under every policy: sharing changes memory, never FLOPs.\n",
      m.sharing == "none" || m.sharing == "ffn" || m.sharing == "attention" || m.sharing == "all"
          ? "* this model's own sharing; "
          : fmt::format("this model ({}) has {} parameters; ", m.sharing, grouped(own.parameters)),
      grouped(extras.embeddings),
      c.model_type == ModelType::Albert
          ? fmt::format("E -> d_model projection ({}), ", grouped(extras.projection))
          : std::string(),
      grouped(extras.pooler), batch, seq_len);
}

nlohmann::ordered_json to_json(const ModelSource& m, Index batch, Index seq_len) {
  const EncoderConfig& c = m.config;
  const Figures own = figures(c, m.attention_slots, m.ffn_slots);
  const count::EncoderExtras extras = count::encoder_extras(c);
  const count::ParameterCount stack = count::stack(c.block(), m.attention_slots, m.ffn_slots);
  const count::FlopCount flops = encoder_flops(c, batch, seq_len);
  const count::FlopCount stack_flops =
      count::forward_flops(c.block(), c.stack_layers(), batch, seq_len);

  nlohmann::ordered_json by_policy = nlohmann::ordered_json::object(),
                         bytes_by_policy = nlohmann::ordered_json::object();
  for (const char* name : kPolicyNames) {
    const SlotPlan plan = policy_plan(name, c.stack_layers());
    const Figures f = figures(c, plan.attention_slots, plan.ffn_slots);
    by_policy[name] = f.parameters;
    bytes_by_policy[name] = f.weight_bytes;
  }
  return {
      {"model", m.name},
      {"source", to_string(m.kind)},
      {"config", config_json(c)},
      {"sharing", m.sharing},
      {"attention_slots", m.attention_slots},
      {"ffn_slots", m.ffn_slots},
      {"parameters", own.parameters},
      {"parameters_unshared", own.unshared},
      {"weight_bytes", own.weight_bytes},
      {"breakdown",
       {{"embeddings", extras.embeddings},
        {"projection", extras.projection},
        {"pooler", extras.pooler},
        {"attention", stack.attention},
        {"ffn", stack.ffn},
        {"norms", stack.norms}}},
      {"by_policy", by_policy},
      {"weight_bytes_by_policy", bytes_by_policy},
      {"batch", batch},
      {"seq_len", seq_len},
      {"flops_per_forward", {{"matmul", flops.matmul}, {"elementwise", flops.elementwise}}},
      {"stack_flops_per_forward",
       {{"matmul", stack_flops.matmul}, {"elementwise", stack_flops.elementwise}}},
      {"gflops_per_forward", static_cast<double>(flops.matmul) / 1e9},
  };
}

}  // namespace

CLI::App* InfoCommand::add(CLI::App& app) {
  CLI::App* sub = app.add_subcommand(
      "info",
      "Print a model's configuration, then its unique parameters, parameters as if unshared, fp32 "
      "weight size and GFLOPs per forward under each sharing policy (none, ffn, attention, all). "
      "Needs no weights.");
  sub->add_option("--model", model,
                  "Model: a Hugging Face model directory, a config.json, or a preset (" +
                      preset_names() + ")")
      ->required();
  sub->add_option("--seq-len", seq_len,
                  "Tokens per sequence for the FLOP count (default 128, or max_position_embeddings "
                  "when smaller)")
      ->check(CLI::Range(1LL, 1LL << 30));
  sub->add_option("--batch", batch, "Sequences per forward for the FLOP count")
      ->check(CLI::Range(1LL, 1LL << 30))
      ->capture_default_str();
  sub->add_flag("--json", json, "Print one JSON object instead of text");
  return sub;
}

int InfoCommand::run() const {
  const ModelSource m = resolve_model(model);
  const Index positions = m.config.max_position_embeddings;
  const Index s = static_cast<Index>(default_seq_len(seq_len, positions));
  if (s > positions)
    throw ConfigError(fmt::format(
        "info: --seq-len {} exceeds the model's max_position_embeddings ({})", s, positions));
  if (json)
    std::cout << to_json(m, batch, s).dump(2) << '\n';
  else
    print_text(m, batch, s);
  return 0;
}

}  // namespace shareformer::cli
