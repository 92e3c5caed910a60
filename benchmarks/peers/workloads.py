"""The peer benchmark's workloads, models and FLOP count (shared by the harness and its workers).

Run with Debian's /usr/bin/python3 (torch 1.13); nothing here needs anything else.
"""

MODELS = {
    # name: (d_model, n_heads, d_ff, n_layers); the names are shareformer's CLI presets.
    "bert-base": (768, 12, 3072, 12),
    "seed": (512, 8, 2048, 12),
}
POLICIES = ("all", "none")  # all = one block reused by every layer (ALBERT); none = 12 blocks
POLICY_LABEL = {"all": "shared", "none": "unshared"}

FULL_SHAPES = {
    "bert-base": [(1, 16), (1, 32), (1, 128), (8, 128), (1, 512)],
    "seed": [(1, 16)],
}
QUICK_SHAPES = {
    "bert-base": [(1, 16), (1, 128)],
    "seed": [(1, 16)],
}


def flops(model, batch, seq):
    """Analytic matmul FLOPs of one forward through the layer stack.

    Per layer: 2*T*(4*d^2 + 2*d*ff) for the QKV, output and FFN projections (T = B*S tokens),
    plus 4*B*S^2*d for the attention scores and the weighted sum of values.
    """
    d, _h, ff, layers = MODELS[model]
    t = batch * seq
    return layers * (2 * t * (4 * d * d + 2 * d * ff) + 4 * batch * seq * seq * d)


def weight_matrix_bytes(model):
    """fp32 bytes of the weight matrices of an unshared stack (n_layers blocks, 4 d^2 + 2 d ff
    each; biases and LayerNorms left out): what a forward of it reads from memory at least once
    when they do not fit in the caches."""
    return MODELS[model][3] * block_matrix_bytes(model)


def block_matrix_bytes(model):
    """fp32 bytes of one block's weight matrices (4 d^2 + 2 d ff; biases and LayerNorms left
    out): what a shared stack's forward reads n_layers times, from the caches where they fit."""
    d, _h, ff, _layers = MODELS[model]
    return 4 * (4 * d * d + 2 * d * ff)


def weight_seed(model, policy):
    return {"bert-base": 1000, "seed": 2000}[model] + (0 if policy == "all" else 1)


def build_stack(model, policy):
    """The PyTorch stack: one nn.TransformerEncoderLayer called n_layers times (policy "all"),
    or n_layers distinct ones ("none"). Deterministic weights, so the ONNX file exported from
    it and the PyTorch peer hold the same numbers."""
    import torch
    from torch import nn

    d, h, ff, layers = MODELS[model]

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(weight_seed(model, policy))
            n_blocks = 1 if policy == "all" else layers
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(d, h, ff, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=False)
                for _ in range(n_blocks))
            self.n_layers = layers

        def forward(self, x):
            for i in range(self.n_layers):
                x = self.blocks[i % len(self.blocks)](x)
            return x

    return Stack().eval()
