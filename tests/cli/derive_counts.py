#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes expected_counts.json: the parameter counts `shareformer info --json` must report.

Derived independently of the library's closed-form formula (count/accounting.hpp): for each config
in tests/data/hf_configs/ this script lists, tensor by tensor, the parameters that Hugging Face's
AlbertModel / BertModel (with pooler) register -- the names and shapes `named_parameters()` yields --
and sums their sizes. "parameters" is that sum (PyTorch's sum(p.numel())); "by_policy" rebuilds the
same encoder with its stack of blocks shared per policy (none: one attention and one FFN sub-layer
per block application; ffn: one FFN sub-layer shared; attention: one attention sub-layer shared;
all: one block), embeddings and pooler counted once.

Anchors checked below: albert-base-v2 has 11,683,584 parameters and bert-base-uncased 109,482,240
(PyTorch's count for AlbertModel.from_pretrained / BertModel.from_pretrained), and the seed preset's
stack matches tests/golden/data/seed_counts.json (counted by PyTorch on the seed's own code).

Standard library only. Run from anywhere:  python3 tests/cli/derive_counts.py
"""
import json
import math
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
CONFIGS = HERE.parent / "data" / "hf_configs"
GOLDEN = HERE.parent / "golden" / "data" / "seed_counts.json"


def numel(shape):
    return math.prod(shape)


def linear(name, n_in, n_out):
    return [(name + ".weight", (n_out, n_in)), (name + ".bias", (n_out,))]


def layer_norm(name, n):
    return [(name + ".weight", (n,)), (name + ".bias", (n,))]


def attention_tensors(h, prefix):
    """One attention sub-layer with its LayerNorm, named as BERT names them."""
    t = []
    for proj in ("query", "key", "value"):
        t += linear(f"{prefix}.attention.self.{proj}", h, h)
    t += linear(f"{prefix}.attention.output.dense", h, h)
    t += layer_norm(f"{prefix}.attention.output.LayerNorm", h)
    return t


def ffn_tensors(h, f, prefix):
    """One FFN sub-layer with its LayerNorm."""
    return (linear(f"{prefix}.intermediate.dense", h, f) + linear(f"{prefix}.output.dense", f, h) +
            layer_norm(f"{prefix}.output.LayerNorm", h))


def extras(cfg):
    """Embeddings, ALBERT's E -> H projection and the pooler."""
    albert = cfg["model_type"] == "albert"
    h = cfg["hidden_size"]
    e = cfg.get("embedding_size", 128) if albert else h
    t = [("embeddings.word_embeddings.weight", (cfg["vocab_size"], e)),
         ("embeddings.position_embeddings.weight", (cfg["max_position_embeddings"], e)),
         ("embeddings.token_type_embeddings.weight", (cfg["type_vocab_size"], e))]
    t += layer_norm("embeddings.LayerNorm", e)
    if albert:
        t += linear("encoder.embedding_hidden_mapping_in", e, h)
    t += linear("pooler.dense", h, h)
    return t


def model_tensors(cfg):
    """Every tensor of the HF model as transformers builds it."""
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    t = extras(cfg)
    if cfg["model_type"] == "albert":
        # AlbertTransformer: num_hidden_groups groups of inner_group_num AlbertLayers.
        for g in range(cfg.get("num_hidden_groups", 1)):
            for i in range(cfg.get("inner_group_num", 1)):
                p = f"encoder.albert_layer_groups.{g}.albert_layers.{i}"
                t += [(n.replace(".attention.self.", ".attention.").replace(".attention.output.", ".attention."), s)
                      for n, s in attention_tensors(h, p)]
                t += ffn_tensors(h, f, p)
    else:
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            t += attention_tensors(h, p) + ffn_tensors(h, f, p)
    names = [n for n, _ in t]
    assert len(names) == len(set(names)), "duplicate tensor name"
    return t


def stack_blocks(cfg):
    """Block applications in the stack: ALBERT runs inner_group_num blocks per layer."""
    inner = cfg.get("inner_group_num", 1) if cfg["model_type"] == "albert" else 1
    return cfg["num_hidden_layers"] * inner


def by_policy(cfg):
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    base = sum(numel(s) for _, s in extras(cfg))
    att = sum(numel(s) for _, s in attention_tensors(h, "x"))
    ffn = sum(numel(s) for _, s in ffn_tensors(h, f, "x"))
    n = stack_blocks(cfg)
    slots = {"none": (n, n), "ffn": (n, 1), "attention": (1, n), "all": (1, 1)}
    return {p: base + a * att + b * ffn for p, (a, b) in slots.items()}


SEED = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 512, "num_hidden_layers": 12,
        "num_attention_heads": 8, "intermediate_size": 2048, "max_position_embeddings": 512,
        "type_vocab_size": 2}

# Preset name -> the config it reproduces.
PRESETS = {"seed": None, "bert-base": "bert-base-uncased", "albert-base": "albert-base-v2",
           "albert-large": "albert-large-v2", "albert-xlarge": "albert-xlarge-v2",
           "albert-xxlarge": "albert-xxlarge-v2", "minilm-l6": "all-MiniLM-L6-v2"}


def entry(cfg):
    return {"parameters": sum(numel(s) for _, s in model_tensors(cfg)), "by_policy": by_policy(cfg)}


def main():
    configs = {p.stem: json.loads(p.read_text()) for p in sorted(CONFIGS.glob("*.json"))}
    out = {"configs": {name: entry(cfg) for name, cfg in configs.items()}, "presets": {}}
    for preset, name in PRESETS.items():
        out["presets"][preset] = entry(SEED) if name is None else out["configs"][name]

    assert out["configs"]["albert-base-v2"]["parameters"] == 11_683_584
    assert out["configs"]["bert-base-uncased"]["parameters"] == 109_482_240
    seed_stack = json.loads(GOLDEN.read_text())["seed"]["counts"]
    seed_extras = sum(numel(s) for _, s in extras(SEED))
    for policy, count in seed_stack.items():
        assert out["presets"]["seed"]["by_policy"][policy] - seed_extras == count, policy

    (HERE / "expected_counts.json").write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
