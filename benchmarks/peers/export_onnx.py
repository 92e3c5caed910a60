"""Exports the PyTorch stacks of workloads.py to ONNX (opset 14, dynamic batch and sequence).

Usage: /usr/bin/python3 export_onnx.py OUT_DIR [--force]
Writes OUT_DIR/<model>-<policy>.onnx, a reference input/output pair per model (for the ONNX
Runtime worker's sanity check) and OUT_DIR/manifest.json with the files' sizes. Skips files that
exist unless --force.
"""
import json
import os
import sys
import time

import torch

from workloads import MODELS, POLICIES, build_stack

OPSET = 14
CHECK_SHAPE = (1, 16)


def export_one(model, policy, out_dir, force):
    path = os.path.join(out_dir, f"{model}-{policy}.onnx")
    ref_in = os.path.join(out_dir, f"{model}-{policy}.in.bin")
    ref_out = os.path.join(out_dir, f"{model}-{policy}.out.bin")
    if not force and all(os.path.exists(p) for p in (path, ref_in, ref_out)):
        return path, False
    stack = build_stack(model, policy)
    d = MODELS[model][0]
    # With requires_grad=True and grad enabled, nn.TransformerEncoderLayer takes its plain-op
    # path, which the exporter can translate; its fused fast path has no ONNX symbolic.
    for p in stack.parameters():
        p.requires_grad_(True)
    x = torch.randn(2, 8, d, generator=torch.Generator().manual_seed(7))
    tmp = path + ".tmp"
    with torch.enable_grad():
        torch.onnx.export(stack, (x,), tmp, opset_version=OPSET, do_constant_folding=True,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}})
    os.replace(tmp, path)
    xin = torch.randn(*CHECK_SHAPE, d, generator=torch.Generator().manual_seed(11))
    with torch.inference_mode():
        y = stack(xin)
    xin.numpy().astype("<f4").tofile(ref_in)
    y.numpy().astype("<f4").tofile(ref_out)
    return path, True


def main():
    out_dir = sys.argv[1]
    force = "--force" in sys.argv[2:]
    os.makedirs(out_dir, exist_ok=True)
    manifest = {"torch": torch.__version__, "opset": OPSET, "check_shape": list(CHECK_SHAPE),
                "files": {}}
    for model in MODELS:
        for policy in POLICIES:
            t0 = time.perf_counter()
            path, made = export_one(model, policy, out_dir, force)
            n_params = sum(p.numel() for p in build_stack(model, policy).parameters())
            manifest["files"][f"{model}-{policy}"] = {
                "file": os.path.basename(path),
                "bytes": os.path.getsize(path),
                "torch_parameter_bytes": 4 * n_params,
            }
            if made:
                print(f"exported {path}: {os.path.getsize(path) / 2**20:.1f} MiB "
                      f"({4 * n_params / 2**20:.1f} MiB of parameters in PyTorch) "
                      f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
