#!/usr/bin/python3
"""Write small Hugging Face-layout ALBERT and BERT checkpoints with expected outputs.

Run with Debian's PyTorch (torch 1.13, no `transformers` needed):
    /usr/bin/python3 tests/golden/make_hf_goldens.py

For each case it writes tests/golden/data/hf/<case>/:
  config.json         as the Hub ships it (model_type, hidden_act, layer_norm_eps, ...)
  model.safetensors   random weights under Hugging Face's tensor names, PyTorch [out, in] layout,
                      with the prefixes, heads and buffers of the *ForMaskedLM / *ForPreTraining
                      checkpoints where the case asks for them
  io.safetensors      input_ids, attention_mask, token_type_ids (I64 [B, S]) and the expected
                      last_hidden_state (F32 [B, S, H]) and pooler_output (F32 [B, H])

The expected outputs come from `hf_forward`, a re-implementation of the forward of Hugging Face's
AlbertModel / BertModel (eval mode) written from plain tensor operations, run in float32 as the Hub
model would be. Each case is checked against `torch_forward`, a second formulation built from
torch.nn.TransformerEncoderLayer, F.embedding and F.layer_norm, in float64 (agreement to 1e-9 on
every unmasked position), and the files are read back. Output is byte-identical on re-run.
"""

import json
import math
import os
import shutil

import torch
import torch.nn as nn
import torch.nn.functional as F

from st_write import read_safetensors, write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "data", "hf")

# name, model type, sizes, activation, layer_norm_eps, prefix/heads layout, weight dtype, inputs.
# "omit" lists optional config.json fields left out so the loader's defaults are exercised.
CASES = [
    dict(name="albert_groups", model_type="albert", vocab=100, E=16, H=32, heads=4, ff=64,
         layers=4, groups=2, inner=2, act="gelu_new", eps=1e-12, max_pos=20, type_vocab=2,
         layout="plain", dtype="F32", batch=3, seq=7, mask=("lengths", [7, 4, 1])),
    dict(name="albert_classic", model_type="albert", vocab=99, E=24, H=40, heads=5, ff=48,
         layers=3, groups=1, inner=1, act="gelu", eps=1e-12, max_pos=16, type_vocab=2,
         layout="plain", dtype="F32", batch=2, seq=10,
         mask=("explicit", [[1, 1, 0, 1, 1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]])),
    dict(name="albert_masked_lm", model_type="albert", vocab=100, E=16, H=32, heads=2, ff=48,
         layers=2, groups=1, inner=1, act="gelu_new", eps=1e-12, max_pos=16, type_vocab=2,
         layout="albert_mlm", dtype="F32", batch=2, seq=6, mask=("lengths", [6, 3])),
    dict(name="albert_bf16", model_type="albert", vocab=100, E=16, H=32, heads=4, ff=48,
         layers=2, groups=1, inner=2, act="gelu_new", eps=1e-12, max_pos=16, type_vocab=2,
         layout="plain", dtype="BF16", batch=2, seq=5, mask=("lengths", [5, 2])),
    dict(name="bert_plain", model_type="bert", vocab=100, H=32, heads=4, ff=64, layers=2,
         act="gelu", eps=1e-12, max_pos=16, type_vocab=2, layout="plain", dtype="F32",
         batch=2, seq=8, mask=("lengths", [8, 5]), omit=["layer_norm_eps", "type_vocab_size"]),
    dict(name="bert_pretraining", model_type="bert", vocab=100, H=32, heads=4, ff=48, layers=3,
         act="gelu", eps=1e-12, max_pos=16, type_vocab=2, layout="bert_pretraining",
         dtype="F32", batch=2, seq=6, mask=("lengths", [6, 4])),
    dict(name="bert_gelu_new", model_type="bert", vocab=100, H=32, heads=4, ff=48, layers=2,
         act="gelu_new", eps=1e-2, max_pos=16, type_vocab=3, layout="plain", dtype="F32",
         batch=2, seq=6, mask=("lengths", [6, 6])),
    dict(name="bert_head6", model_type="bert", vocab=100, H=36, heads=6, ff=48, layers=2,
         act="gelu_pytorch_tanh", eps=1e-12, max_pos=16, type_vocab=2, layout="plain",
         dtype="F32", batch=2, seq=5, mask=("lengths", [5, 3])),
    dict(name="bert_seq1", model_type="bert", vocab=100, H=32, heads=4, ff=48, layers=2,
         act="relu", eps=1e-12, max_pos=16, type_vocab=2, layout="plain", dtype="F32",
         batch=3, seq=1, mask=("lengths", [1, 1, 1])),
    dict(name="bert_f16", model_type="bert", vocab=100, H=32, heads=4, ff=48, layers=2,
         act="gelu", eps=1e-12, max_pos=12, type_vocab=2, layout="plain", dtype="F16",
         batch=2, seq=12, mask=("lengths", [12, 9])),
]

WEIGHT_STD = 0.15
BIAS_STD = 0.1
NORM_STD = 0.1


# ---------------------------------------------------------------------------
# Weights in Hugging Face naming (no prefix), PyTorch layout
# ---------------------------------------------------------------------------

def hf_weights(case, gen):
    """Random weights for the encoder, as an ordered dict name -> float32 tensor."""
    albert = case["model_type"] == "albert"
    H, ff = case["H"], case["ff"]
    E = case["E"] if albert else H
    w = {}

    def normal(*shape, std=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).float() * std

    def linear(name, n_in, n_out):
        w[name + ".weight"] = normal(n_out, n_in, std=WEIGHT_STD)
        w[name + ".bias"] = normal(n_out, std=BIAS_STD)

    def norm(name, n):
        w[name + ".weight"] = 1.0 + normal(n, std=NORM_STD)
        w[name + ".bias"] = normal(n, std=NORM_STD)

    w["embeddings.word_embeddings.weight"] = normal(case["vocab"], E)
    w["embeddings.position_embeddings.weight"] = normal(case["max_pos"], E)
    w["embeddings.token_type_embeddings.weight"] = normal(case["type_vocab"], E)
    norm("embeddings.LayerNorm", E)
    if albert:
        linear("encoder.embedding_hidden_mapping_in", E, H)
        for g in range(case["groups"]):
            for k in range(case["inner"]):
                base = f"encoder.albert_layer_groups.{g}.albert_layers.{k}."
                for part in ("query", "key", "value", "dense"):
                    linear(base + "attention." + part, H, H)
                norm(base + "attention.LayerNorm", H)
                linear(base + "ffn", H, ff)
                linear(base + "ffn_output", ff, H)
                norm(base + "full_layer_layer_norm", H)
        linear("pooler", H, H)
    else:
        for i in range(case["layers"]):
            base = f"encoder.layer.{i}."
            for part in ("query", "key", "value"):
                linear(base + "attention.self." + part, H, H)
            linear(base + "attention.output.dense", H, H)
            norm(base + "attention.output.LayerNorm", H)
            linear(base + "intermediate.dense", H, ff)
            linear(base + "output.dense", ff, H)
            norm(base + "output.LayerNorm", H)
        linear("pooler.dense", H, H)
    if case["dtype"] != "F32":
        # The checkpoint stores half precision; the model computes with those values upcast.
        half = torch.float16 if case["dtype"] == "F16" else torch.bfloat16
        w = {k: v.to(half).float() for k, v in w.items()}
    return w


def head_tensors(case, gen):
    """Task heads and buffers the encoder must ignore, with their Hub names."""
    H, V = case["H"], case["vocab"]
    E = case.get("E", H)

    def normal(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).float() * 0.1

    extra = {}
    if case["layout"] == "albert_mlm":
        extra["predictions.bias"] = normal(V)
        extra["predictions.dense.weight"] = normal(E, H)
        extra["predictions.dense.bias"] = normal(E)
        extra["predictions.LayerNorm.weight"] = normal(E)
        extra["predictions.LayerNorm.bias"] = normal(E)
        extra["predictions.decoder.weight"] = normal(V, E)
        extra["predictions.decoder.bias"] = normal(V)
        extra["sop_classifier.classifier.weight"] = normal(2, H)
        extra["sop_classifier.classifier.bias"] = normal(2)
    elif case["layout"] == "bert_pretraining":
        extra["cls.predictions.bias"] = normal(V)
        extra["cls.predictions.transform.dense.weight"] = normal(H, H)
        extra["cls.predictions.transform.dense.bias"] = normal(H)
        extra["cls.predictions.transform.LayerNorm.weight"] = normal(H)
        extra["cls.predictions.transform.LayerNorm.bias"] = normal(H)
        extra["cls.predictions.decoder.weight"] = normal(V, H)
        extra["cls.seq_relationship.weight"] = normal(2, H)
        extra["cls.seq_relationship.bias"] = normal(2)
    return extra


def prefix_of(case):
    return {"plain": "", "albert_mlm": "albert.", "bert_pretraining": "bert."}[case["layout"]]


def config_json(case):
    albert = case["model_type"] == "albert"
    arch = {"plain": "AlbertModel" if albert else "BertModel", "albert_mlm": "AlbertForMaskedLM",
            "bert_pretraining": "BertForPreTraining"}[case["layout"]]
    c = {
        "architectures": [arch],
        "attention_probs_dropout_prob": 0.1 if not albert else 0,
        "hidden_act": case["act"],
        "hidden_dropout_prob": 0.1 if not albert else 0,
        "hidden_size": case["H"],
        "initializer_range": 0.02,
        "intermediate_size": case["ff"],
        "layer_norm_eps": case["eps"],
        "max_position_embeddings": case["max_pos"],
        "model_type": case["model_type"],
        "num_attention_heads": case["heads"],
        "num_hidden_layers": case["layers"],
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[case["dtype"]],
        "transformers_version": "4.30.2",
        "type_vocab_size": case["type_vocab"],
        "vocab_size": case["vocab"],
    }
    if albert:
        c.update(embedding_size=case["E"], num_hidden_groups=case["groups"],
                 inner_group_num=case["inner"], bos_token_id=2, eos_token_id=3,
                 classifier_dropout_prob=0.1)
    else:
        c.update(use_cache=True, classifier_dropout=None)
    for field in case.get("omit", []):
        del c[field]
    return c


def make_inputs(case, gen):
    B, S = case["batch"], case["seq"]
    ids = torch.randint(0, case["vocab"], (B, S), generator=gen)
    types = torch.randint(0, case["type_vocab"], (B, S), generator=gen)
    kind, spec = case["mask"]
    if kind == "lengths":
        mask = torch.zeros(B, S, dtype=torch.int64)
        for b, n in enumerate(spec):
            mask[b, :n] = 1
    else:
        mask = torch.tensor(spec, dtype=torch.int64)
    assert (mask.sum(dim=1) > 0).all(), "a fully masked sequence has no reference behaviour to match"
    ids = torch.where(mask == 1, ids, torch.zeros_like(ids))  # padding token 0 where masked
    return ids, types, mask


# ---------------------------------------------------------------------------
# Formulation 1: the Hugging Face forward, from plain tensor operations
# ---------------------------------------------------------------------------

def act_fn(name):
    if name == "gelu":
        return lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    if name == "relu":
        return lambda x: torch.clamp(x, min=0.0)
    raise ValueError(name)


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def dense(x, w, prefix):
    return x @ w[prefix + ".weight"].t() + w[prefix + ".bias"]


def hf_attention(x, w, names, heads, ext_mask, eps):
    """names: query, key, value, dense, LayerNorm prefixes. Post-LN residual."""
    B, S, H = x.shape
    dh = H // heads

    def split(t):  # (B, S, H) -> (B, heads, S, dh)
        return t.view(B, S, heads, dh).permute(0, 2, 1, 3)

    q, k, v = (split(dense(x, w, names[i])) for i in range(3))
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + ext_mask
    scores = scores - scores.max(dim=-1, keepdim=True).values
    probs = torch.exp(scores)
    probs = probs / probs.sum(dim=-1, keepdim=True)
    ctx = (probs @ v).permute(0, 2, 1, 3).reshape(B, S, H)
    return layer_norm(x + dense(ctx, w, names[3]), w[names[4] + ".weight"], w[names[4] + ".bias"], eps)


def hf_ffn(x, w, names, act, eps):
    """names: in, out, LayerNorm prefixes."""
    y = dense(act(dense(x, w, names[0])), w, names[1])
    return layer_norm(x + y, w[names[2] + ".weight"], w[names[2] + ".bias"], eps)


def hf_forward(case, w, ids, types, mask, dtype):
    w = {k: v.to(dtype) for k, v in w.items()}
    eps, heads, act = case["eps"], case["heads"], act_fn(case["act"])
    S = ids.shape[1]
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][types])
    x = x + w["embeddings.position_embeddings.weight"][torch.arange(S)][None]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    # Additive mask on the keys, broadcast over heads and queries.
    ext = (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
    if case["model_type"] == "albert":
        x = dense(x, w, "encoder.embedding_hidden_mapping_in")
        L, G = case["layers"], case["groups"]
        for i in range(L):
            g = int(i / (L / G))
            for k in range(case["inner"]):
                base = f"encoder.albert_layer_groups.{g}.albert_layers.{k}."
                x = hf_attention(x, w, [base + "attention." + p for p in ("query", "key", "value", "dense", "LayerNorm")],
                                 heads, ext, eps)
                x = hf_ffn(x, w, [base + "ffn", base + "ffn_output", base + "full_layer_layer_norm"], act, eps)
        pooled = torch.tanh(dense(x[:, 0], w, "pooler"))
    else:
        for i in range(case["layers"]):
            base = f"encoder.layer.{i}."
            names = [base + "attention.self." + p for p in ("query", "key", "value")]
            names += [base + "attention.output.dense", base + "attention.output.LayerNorm"]
            x = hf_attention(x, w, names, heads, ext, eps)
            x = hf_ffn(x, w, [base + "intermediate.dense", base + "output.dense", base + "output.LayerNorm"], act, eps)
        pooled = torch.tanh(dense(x[:, 0], w, "pooler.dense"))
    return x, pooled


# ---------------------------------------------------------------------------
# Formulation 2: torch.nn modules (TransformerEncoderLayer is post-LN BERT layer)
# ---------------------------------------------------------------------------

def torch_act(name):
    return {"gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
            "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu}[name]


def torch_layer(case, w, attn, ln1, lin1, lin2, ln2):
    H = case["H"]
    layer = nn.TransformerEncoderLayer(H, case["heads"], dim_feedforward=case["ff"], dropout=0.0,
                                       activation=torch_act(case["act"]), layer_norm_eps=case["eps"],
                                       batch_first=True, norm_first=False, dtype=torch.float64)
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([w[p + ".weight"] for p in attn[:3]]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([w[p + ".bias"] for p in attn[:3]]))
        layer.self_attn.out_proj.weight.copy_(w[attn[3] + ".weight"])
        layer.self_attn.out_proj.bias.copy_(w[attn[3] + ".bias"])
        for module, name in ((layer.norm1, ln1), (layer.linear1, lin1), (layer.linear2, lin2), (layer.norm2, ln2)):
            module.weight.copy_(w[name + ".weight"])
            module.bias.copy_(w[name + ".bias"])
    layer.train()  # dropout is 0; train mode keeps the reference (non-fused) path
    return layer


def torch_forward(case, w, ids, types, mask):
    w = {k: v.double() for k, v in w.items()}
    S = ids.shape[1]
    x = F.embedding(ids, w["embeddings.word_embeddings.weight"])
    x = x + F.embedding(torch.arange(S), w["embeddings.position_embeddings.weight"])[None]
    x = x + F.embedding(types, w["embeddings.token_type_embeddings.weight"])
    x = F.layer_norm(x, x.shape[-1:], w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], case["eps"])
    layers = []
    if case["model_type"] == "albert":
        x = F.linear(x, w["encoder.embedding_hidden_mapping_in.weight"], w["encoder.embedding_hidden_mapping_in.bias"])
        # Each group serves num_hidden_layers / num_hidden_groups consecutive layers.
        for g in range(case["groups"]):
            for _ in range(case["layers"] // case["groups"]):
                for k in range(case["inner"]):
                    b = f"encoder.albert_layer_groups.{g}.albert_layers.{k}."
                    layers.append(torch_layer(case, w, [b + "attention.query", b + "attention.key", b + "attention.value",
                                                        b + "attention.dense"], b + "attention.LayerNorm",
                                              b + "ffn", b + "ffn_output", b + "full_layer_layer_norm"))
        pool = "pooler"
    else:
        for i in range(case["layers"]):
            b = f"encoder.layer.{i}."
            layers.append(torch_layer(case, w, [b + "attention.self.query", b + "attention.self.key",
                                                b + "attention.self.value", b + "attention.output.dense"],
                                      b + "attention.output.LayerNorm", b + "intermediate.dense",
                                      b + "output.dense", b + "output.LayerNorm"))
        pool = "pooler.dense"
    padding = mask == 0
    for layer in layers:
        x = layer(x, src_key_padding_mask=padding)
    return x, torch.tanh(F.linear(x[:, 0], w[pool + ".weight"], w[pool + ".bias"]))


# ---------------------------------------------------------------------------

def check_activations():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    assert torch.allclose(act_fn("gelu")(x), F.gelu(x), atol=1e-14)
    assert torch.allclose(act_fn("gelu_new")(x), F.gelu(x, approximate="tanh"), atol=1e-14)
    assert torch.allclose(act_fn("relu")(x), F.relu(x), atol=0)


def make_case(index, case):
    gen = torch.Generator().manual_seed(1000 + index)
    w = hf_weights(case, gen)
    extra = head_tensors(case, gen)
    ids, types, mask = make_inputs(case, gen)

    hidden, pooled = hf_forward(case, w, ids, types, mask, torch.float32)
    hidden64, pooled64 = hf_forward(case, w, ids, types, mask, torch.float64)
    alt_hidden, alt_pooled = torch_forward(case, w, ids, types, mask)
    valid = mask.bool()
    err_alt = max((hidden64 - alt_hidden)[valid].abs().max().item(), (pooled64 - alt_pooled).abs().max().item())
    err_f32 = max((hidden.double() - hidden64)[valid].abs().max().item(),
                  (pooled.double() - pooled64).abs().max().item())
    assert err_alt < 1e-9, (case["name"], err_alt)
    assert err_f32 < 2e-5, (case["name"], err_f32)

    directory = os.path.join(OUT_DIR, case["name"])
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as fh:
        json.dump(config_json(case), fh, indent=2, sort_keys=True)
        fh.write("\n")

    prefix = prefix_of(case)
    tensors = {prefix + k: (v, case["dtype"]) for k, v in w.items()}
    tensors.update({k: (v, case["dtype"]) for k, v in extra.items()})
    if case["layout"] != "plain":
        tensors[prefix + "embeddings.position_ids"] = (torch.arange(case["max_pos"])[None], "I64")
    model_path = os.path.join(directory, "model.safetensors")
    write_safetensors(model_path, tensors, {"format": "pt"})

    io = {
        "input_ids": (ids, "I64"),
        "attention_mask": (mask, "I64"),
        "token_type_ids": (types, "I64"),
        "last_hidden_state": (hidden, "F32"),
        "pooler_output": (pooled, "F32"),
    }
    io_path = os.path.join(directory, "io.safetensors")
    write_safetensors(io_path, io)

    # Read back: the weights as stored are the weights the forward used.
    back, _ = read_safetensors(model_path)
    for k, v in w.items():
        assert torch.equal(back[prefix + k].float(), v), k
    back_io, _ = read_safetensors(io_path)
    assert torch.equal(back_io["last_hidden_state"], hidden)
    size = os.path.getsize(model_path) + os.path.getsize(io_path)
    print(f"{case['name']:18s} params {sum(v.numel() for v in w.values()):6d}  "
          f"torch-vs-hf(f64) {err_alt:.1e}  f32-vs-f64 {err_f32:.1e}  {size / 1024:.0f} KiB")


def main():
    torch.set_num_threads(1)
    check_activations()
    if os.path.isdir(OUT_DIR):
        shutil.rmtree(OUT_DIR)
    for i, case in enumerate(CASES):
        make_case(i, case)


if __name__ == "__main__":
    main()
