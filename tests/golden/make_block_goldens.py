#!/usr/bin/python3
"""Write deterministic golden files for shareformer's C++ parity tests.

Run with Debian's PyTorch (torch 1.13):  /usr/bin/python3 tests/golden/make_block_goldens.py

Writes tests/golden/data/block_<case>.safetensors (one transformer stack per file:
weights, padded input, lengths, float64 and float32 outputs) and
tests/golden/data/seed_counts.json (parameter counts of the seed's models).
Safetensors files are written by hand (st_write.py, no safetensors package).
Re-running produces byte-identical files.
"""

import copy
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from st_write import read_safetensors, write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(HERE, "data")

TORCH_SOURCE = "torch.nn.TransformerEncoderLayer"
SEED_SOURCE = "seed"
POLICIES = ("none", "ffn", "attention", "all")


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

class TransformerBlock(nn.Module):
    """The seed's TransformerBlock, verbatim, plus key_padding_mask on the attention call.

    Post-LN, as the seed's forward actually computes (its comment says "Pre-LN").
    """

    def __init__(self, d_model, num_heads, d_ff):
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, d_ff),
            nn.GELU(),
            nn.Linear(d_ff, d_model),
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x, key_padding_mask=None, attn_mask=None):
        attn_output, _ = self.attention(x, x, x, key_padding_mask=key_padding_mask,
                                        attn_mask=attn_mask, need_weights=False)
        x = x + attn_output
        x = self.norm1(x)
        ffn_output = self.ffn(x)
        x = x + ffn_output
        x = self.norm2(x)
        return x


# Uniform accessors over both sources: (attention module, its norm), (lin1, lin2, ffn norm).
def attn_parts(layer, source):
    if source == SEED_SOURCE:
        return layer.attention, layer.norm1
    return layer.self_attn, layer.norm1


def ffn_parts(layer, source):
    if source == SEED_SOURCE:
        return layer.ffn[0], layer.ffn[2], layer.norm2
    return layer.linear1, layer.linear2, layer.norm2


def share_attention(layer, base, source):
    if source == SEED_SOURCE:
        layer.attention = base.attention
    else:
        layer.self_attn = base.self_attn
    layer.norm1 = base.norm1


def share_ffn(layer, base, source):
    if source == SEED_SOURCE:
        layer.ffn = base.ffn
    else:
        layer.linear1 = base.linear1
        layer.linear2 = base.linear2
    layer.norm2 = base.norm2


class Stack(nn.Module):
    """N layers (possibly sharing sub-modules) + optional final LayerNorm."""

    def __init__(self, cfg):
        super().__init__()
        d, h, ff, n = cfg["d_model"], cfg["n_heads"], cfg["d_ff"], cfg["n_layers"]
        self.source = cfg["source"]
        sharing = cfg["sharing"]

        def make():
            if self.source == SEED_SOURCE:
                return TransformerBlock(d, h, ff)
            return nn.TransformerEncoderLayer(
                d, h, dim_feedforward=ff, dropout=0.0, activation=cfg["activation"],
                batch_first=True, norm_first=(cfg["norm"] == "pre"))

        if sharing == "all":
            block = make()
            layers = [block] * n           # one object applied n times
        else:
            layers = [make() for _ in range(n)]
            for layer in layers[1:]:
                if sharing == "ffn":
                    share_ffn(layer, layers[0], self.source)
                elif sharing == "attention":
                    share_attention(layer, layers[0], self.source)
                else:
                    assert sharing == "none"
        self.layers = nn.ModuleList(layers)
        self.final_norm = nn.LayerNorm(d) if cfg["final_norm"] else None

    def forward(self, x, key_padding_mask, attn_mask=None):
        for layer in self.layers:
            if self.source == SEED_SOURCE:
                x = layer(x, key_padding_mask=key_padding_mask, attn_mask=attn_mask)
            else:
                x = layer(x, src_mask=attn_mask, src_key_padding_mask=key_padding_mask)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x


def randomize(model):
    """Non-trivial LayerNorm weights/biases and non-zero biases everywhere (deduped params)."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.weight.copy_(1.0 + 0.1 * torch.randn_like(mod.weight))
                mod.bias.copy_(0.1 * torch.randn_like(mod.bias))
            elif isinstance(mod, nn.MultiheadAttention):
                mod.in_proj_bias.copy_(0.1 * torch.randn_like(mod.in_proj_bias))
                mod.out_proj.bias.copy_(0.1 * torch.randn_like(mod.out_proj.bias))
            elif isinstance(mod, nn.Linear) and not isinstance(
                    mod, nn.modules.linear.NonDynamicallyQuantizableLinear):
                mod.bias.copy_(0.1 * torch.randn_like(mod.bias))


def count_params(model):
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------
# Independent reference (plain torch ops, float64)
# ---------------------------------------------------------------------------

def ref_layer_norm(x, w, b, eps):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def ref_act(x, activation):
    if activation == "relu":
        return torch.clamp(x, min=0.0)
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def ref_attention(x, W, tensors, a, n_heads, lengths, causal):
    B, S, d = x.shape
    dh = d // n_heads
    w_in, b_in = W["attention.%d.in_proj_weight" % a], W["attention.%d.in_proj_bias" % a]
    qkv = x @ w_in.t() + b_in                               # [B,S,3d]
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
    split = lambda t: t.reshape(B, S, n_heads, dh).permute(0, 2, 1, 3)   # [B,H,S,dh]
    q, k, v = split(q), split(k), split(v)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)     # [B,H,S,S]
    key_valid = torch.arange(S)[None, :] < lengths[:, None]  # [B,S]
    allowed = key_valid[:, None, None, :].expand(B, n_heads, S, S)
    if causal:
        allowed = allowed & torch.ones(S, S, dtype=torch.bool).tril()[None, None]
    scores = scores.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    o = (p @ v).permute(0, 2, 1, 3).reshape(B, S, d)
    return o @ W["attention.%d.out_proj_weight" % a].t() + W["attention.%d.out_proj_bias" % a]


def ref_ffn(x, W, f, activation):
    h = ref_act(x @ W["ffn.%d.linear1_weight" % f].t() + W["ffn.%d.linear1_bias" % f], activation)
    return h @ W["ffn.%d.linear2_weight" % f].t() + W["ffn.%d.linear2_bias" % f]


def reference_forward(cfg, W, x, lengths):
    eps = cfg["eps"]
    ln = lambda t, pre: ref_layer_norm(t, W[pre + "norm_weight"], W[pre + "norm_bias"], eps)
    for i in range(cfg["n_layers"]):
        a, f = slot_of(cfg["sharing"], i)
        ap, fp = "attention.%d." % a, "ffn.%d." % f
        attn = lambda t: ref_attention(t, W, None, a, cfg["n_heads"], lengths, cfg["causal"])
        ffn = lambda t: ref_ffn(t, W, f, cfg["activation"])
        if cfg["norm"] == "pre":
            x = x + attn(ln(x, ap))
            x = x + ffn(ln(x, fp))
        else:
            x = ln(x + attn(x), ap)
            x = ln(x + ffn(x), fp)
    if cfg["final_norm"]:
        x = ln(x, "final_")
    return x


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------

def slot_of(sharing, i):
    """(attention slot, ffn slot) used by layer i."""
    a = 0 if sharing in ("attention", "all") else i
    f = 0 if sharing in ("ffn", "all") else i
    return a, f


def slot_counts(sharing, n):
    a = 1 if sharing in ("attention", "all") else n
    f = 1 if sharing in ("ffn", "all") else n
    return a, f


def export_weights(model, cfg):
    W = {}
    source = cfg["source"]
    seen_a, seen_f = {}, {}
    for i, layer in enumerate(model.layers):
        a, f = slot_of(cfg["sharing"], i)
        mha, n1 = attn_parts(layer, source)
        l1, l2, n2 = ffn_parts(layer, source)
        # The slot mapping must match the module identity actually used by the model.
        if a in seen_a:
            assert seen_a[a] == (id(mha), id(n1))
        else:
            seen_a[a] = (id(mha), id(n1))
            assert mha._qkv_same_embed_dim and mha.in_proj_bias is not None
            W["attention.%d.in_proj_weight" % a] = mha.in_proj_weight
            W["attention.%d.in_proj_bias" % a] = mha.in_proj_bias
            W["attention.%d.out_proj_weight" % a] = mha.out_proj.weight
            W["attention.%d.out_proj_bias" % a] = mha.out_proj.bias
            W["attention.%d.norm_weight" % a] = n1.weight
            W["attention.%d.norm_bias" % a] = n1.bias
        if f in seen_f:
            assert seen_f[f] == (id(l1), id(l2), id(n2))
        else:
            seen_f[f] = (id(l1), id(l2), id(n2))
            W["ffn.%d.linear1_weight" % f] = l1.weight
            W["ffn.%d.linear1_bias" % f] = l1.bias
            W["ffn.%d.linear2_weight" % f] = l2.weight
            W["ffn.%d.linear2_bias" % f] = l2.bias
            W["ffn.%d.norm_weight" % f] = n2.weight
            W["ffn.%d.norm_bias" % f] = n2.bias
    # Distinct slots really are distinct objects.
    assert len(set(seen_a.values())) == len(seen_a)
    assert len(set(seen_f.values())) == len(seen_f)
    assert (len(seen_a), len(seen_f)) == slot_counts(cfg["sharing"], cfg["n_layers"])
    if cfg["final_norm"]:
        W["final_norm_weight"] = model.final_norm.weight
        W["final_norm_bias"] = model.final_norm.bias
    W = {k: v.detach().clone() for k, v in W.items()}
    for v in W.values():
        assert v.dtype == torch.float64
    # Every deduplicated parameter of the model is exported exactly once.
    assert sum(v.numel() for v in W.values()) == count_params(model)
    return W


def causal_mask(S, dtype):
    return torch.triu(torch.full((S, S), float("-inf"), dtype=dtype), diagonal=1)


def run_case(name, cfg, seed):
    cfg = dict(cfg)
    cfg.setdefault("eps", 1e-5)
    cfg.setdefault("causal", False)
    cfg["final_norm"] = cfg["norm"] == "pre"
    if cfg["source"] == SEED_SOURCE:
        assert cfg["activation"] == "gelu" and cfg["norm"] == "post"
    d, S, lengths_list = cfg["d_model"], cfg["seq_len"], cfg["lengths"]
    B = len(lengths_list)
    assert max(lengths_list) == S and min(lengths_list) == 1

    torch.manual_seed(seed)
    model = Stack(cfg)
    model.double()
    randomize(model)
    model.train()                      # non-fast path; dropout is 0 anyway
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            assert m.eps == cfg["eps"]
    n_params = count_params(model)

    x = torch.randn(B, S, d, dtype=torch.float64)
    lengths = torch.tensor(lengths_list, dtype=torch.int64)
    kpm = torch.arange(S)[None, :] >= lengths[:, None]          # True = pad
    mask64 = causal_mask(S, torch.float64) if cfg["causal"] else None

    with torch.no_grad():
        out64 = model(x, kpm, mask64)
        model32 = copy.deepcopy(model).float()                  # deepcopy keeps sharing
        assert count_params(model32) == n_params
        mask32 = causal_mask(S, torch.float32) if cfg["causal"] else None
        out32 = model32(x.float(), kpm, mask32)

    W = export_weights(model, cfg)
    with torch.no_grad():
        ref = reference_forward(cfg, W, x, lengths)
    assert torch.isfinite(out64).all() and torch.isfinite(out32).all()
    err_ref = (ref - out64).abs().max().item()
    assert err_ref <= 1e-12, (name, err_ref)
    err32 = (out32.double() - out64).abs().max().item()
    assert err32 <= 1e-4, (name, err32)

    tensors = dict(W)
    tensors["input"] = x
    tensors["lengths"] = lengths
    tensors["output"] = out64
    tensors["output_f32"] = out32
    meta = {
        "d_model": str(d),
        "n_heads": str(cfg["n_heads"]),
        "d_ff": str(cfg["d_ff"]),
        "n_layers": str(cfg["n_layers"]),
        "activation": cfg["activation"],
        "norm": cfg["norm"],
        "eps": repr(cfg["eps"]),
        "causal": "1" if cfg["causal"] else "0",
        "sharing": cfg["sharing"],
        "final_norm": "1" if cfg["final_norm"] else "0",
        "source": cfg["source"],
        "torch_parameters": str(n_params),
        "torch_version": torch.__version__,
    }
    path = os.path.join(DATA_DIR, "block_%s.safetensors" % name)
    size = write_safetensors(path, tensors, meta)

    # Round-trip check of the file just written.
    back, back_meta = read_safetensors(path)
    assert back_meta == meta and set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v.detach()), k

    pad_rows = out64[kpm]
    print("%-44s %7d B  src=%-5s %-4s %-4s share=%-9s d=%-2d h=%d ff=%-3d N=%d S=%d len=%s%s "
          "params=%-6d |ref-out64|=%.1e |out32-out64|=%.1e pad-rows-max=%.2f" % (
              os.path.basename(path), size,
              "torch" if cfg["source"] == TORCH_SOURCE else "seed", cfg["norm"],
              cfg["activation"], cfg["sharing"], d, cfg["n_heads"], cfg["d_ff"],
              cfg["n_layers"], S, lengths_list, " causal" if cfg["causal"] else "",
              n_params, err_ref, err32, pad_rows.abs().max().item()))
    return size


CASES = [
    # name, cfg, seed
    ("torch_post_relu_none", dict(source=TORCH_SOURCE, norm="post", activation="relu",
                                  sharing="none", d_model=16, n_heads=2, d_ff=32,
                                  n_layers=3, seq_len=6, lengths=[6, 4, 1])),
    ("torch_post_relu_all", dict(source=TORCH_SOURCE, norm="post", activation="relu",
                                 sharing="all", d_model=16, n_heads=4, d_ff=64,
                                 n_layers=4, seq_len=5, lengths=[3, 5, 1])),
    ("torch_post_gelu_ffn", dict(source=TORCH_SOURCE, norm="post", activation="gelu",
                                 sharing="ffn", d_model=16, n_heads=2, d_ff=48,
                                 n_layers=3, seq_len=7, lengths=[7, 5, 1])),
    ("torch_post_gelu_attention", dict(source=TORCH_SOURCE, norm="post", activation="gelu",
                                       sharing="attention", d_model=16, n_heads=4, d_ff=32,
                                       n_layers=4, seq_len=6, lengths=[1, 6, 4])),
    ("torch_pre_gelu_none", dict(source=TORCH_SOURCE, norm="pre", activation="gelu",
                                 sharing="none", d_model=16, n_heads=2, d_ff=64,
                                 n_layers=3, seq_len=6, lengths=[6, 4, 1])),
    ("torch_pre_gelu_all", dict(source=TORCH_SOURCE, norm="pre", activation="gelu",
                                sharing="all", d_model=32, n_heads=4, d_ff=64,
                                n_layers=4, seq_len=5, lengths=[5, 3, 1])),
    ("torch_pre_relu_ffn", dict(source=TORCH_SOURCE, norm="pre", activation="relu",
                                sharing="ffn", d_model=16, n_heads=4, d_ff=48,
                                n_layers=3, seq_len=7, lengths=[7, 1, 5])),
    ("torch_pre_gelu_attention", dict(source=TORCH_SOURCE, norm="pre", activation="gelu",
                                      sharing="attention", d_model=16, n_heads=2, d_ff=32,
                                      n_layers=4, seq_len=5, lengths=[5, 3, 1])),
    ("torch_post_relu_none_causal", dict(source=TORCH_SOURCE, norm="post", activation="relu",
                                         sharing="none", d_model=16, n_heads=2, d_ff=32,
                                         n_layers=3, seq_len=7, lengths=[7, 5, 1],
                                         causal=True)),
    ("torch_post_gelu_none_dh6", dict(source=TORCH_SOURCE, norm="post", activation="gelu",
                                      sharing="none", d_model=24, n_heads=4, d_ff=48,
                                      n_layers=3, seq_len=6, lengths=[6, 4, 1])),
    ("seed_post_gelu_none", dict(source=SEED_SOURCE, norm="post", activation="gelu",
                                 sharing="none", d_model=16, n_heads=2, d_ff=64,
                                 n_layers=3, seq_len=6, lengths=[6, 4, 1])),
    ("seed_post_gelu_all", dict(source=SEED_SOURCE, norm="post", activation="gelu",
                                sharing="all", d_model=16, n_heads=4, d_ff=48,
                                n_layers=4, seq_len=7, lengths=[7, 5, 1])),
    ("seed_post_gelu_ffn", dict(source=SEED_SOURCE, norm="post", activation="gelu",
                                sharing="ffn", d_model=16, n_heads=2, d_ff=32,
                                n_layers=3, seq_len=5, lengths=[5, 1, 3])),
    ("seed_post_gelu_attention", dict(source=SEED_SOURCE, norm="post", activation="gelu",
                                      sharing="attention", d_model=16, n_heads=4, d_ff=64,
                                      n_layers=3, seq_len=6, lengths=[6, 4, 1])),
]


# ---------------------------------------------------------------------------
# Parameter counts at the seed's configuration
# ---------------------------------------------------------------------------

SEED_EXPECTED = {"none": 37828608, "ffn": 14720512, "attention": 26260480, "all": 3152384}


def seed_counts():
    torch.manual_seed(0)
    result = {}
    for key, source, d, h, ff in [
            ("seed", SEED_SOURCE, 512, 8, 2048),
            ("torch_encoder_layer", TORCH_SOURCE, 512, 8, 2048),
            ("seed_d768", SEED_SOURCE, 768, 12, 3072),
            ("torch_encoder_layer_d768", TORCH_SOURCE, 768, 12, 3072)]:
        counts = {}
        for pol in POLICIES:
            cfg = dict(source=source, d_model=d, n_heads=h, d_ff=ff, n_layers=12,
                       sharing=pol, activation="gelu", norm="post", final_norm=False)
            counts[pol] = count_params(Stack(cfg))
        result[key] = {"source": source, "d_model": d, "n_heads": h, "d_ff": ff,
                       "n_layers": 12, "norm": "post", "final_norm": 0, "counts": counts}
    if result["seed"]["counts"] != SEED_EXPECTED:
        print("WARNING: seed counts %s differ from expected %s"
              % (result["seed"]["counts"], SEED_EXPECTED), file=sys.stderr)
    path = os.path.join(DATA_DIR, "seed_counts.json")
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    with open(path, "w") as fh:
        fh.write(text)
    for key in sorted(result):
        print("seed_counts.json %-26s %s" % (key, result[key]["counts"]))
    return len(text.encode())


def main():
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    os.makedirs(DATA_DIR, exist_ok=True)
    total = 0
    for i, (name, cfg) in enumerate(CASES):
        total += run_case(name, cfg, seed=1000 + i)
    total += seed_counts()
    print("total %d bytes in %s" % (total, DATA_DIR))


if __name__ == "__main__":
    main()
