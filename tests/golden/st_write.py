# SPDX-License-Identifier: MIT
"""Safetensors files written by hand (no `safetensors` package), for the golden-file scripts.

Layout: an 8-byte little-endian header length, the JSON header (keys sorted, no spaces) padded with
spaces to a multiple of 8 bytes, then each tensor's raw little-endian data, tensors in name order, so
data offsets increase in header order. The same input gives the same bytes.

Used by make_block_goldens.py and make_hf_goldens.py; needs torch and numpy (Debian's python3-torch).
"""

import json
import struct

import numpy as np
import torch

# dtype name -> (torch dtype, little-endian numpy dtype). BF16 has no numpy type: its bits travel as
# int16.
DTYPES = {
    "F64": (torch.float64, "<f8"),
    "F32": (torch.float32, "<f4"),
    "F16": (torch.float16, "<f2"),
    "BF16": (torch.bfloat16, "<i2"),
    "I64": (torch.int64, "<i8"),
}
_NAME_OF = {torch_dtype: name for name, (torch_dtype, _) in DTYPES.items()}


def tensor_bytes(t, dtype):
    """The raw little-endian bytes of tensor `t` converted to `dtype` (a DTYPES name)."""
    torch_dtype, np_dtype = DTYPES[dtype]
    t = t.detach().cpu().contiguous().to(torch_dtype)
    if dtype == "BF16":
        t = t.view(torch.int16)
    return t.numpy().astype(np_dtype).tobytes()


def write_safetensors(path, tensors, metadata=None):
    """Writes `tensors` to `path`; returns the file's size in bytes.

    tensors: dict name -> tensor, stored in its own dtype, or name -> (tensor, dtype name), converted
    to that dtype. metadata: dict str -> str, stored as `__metadata__` unless empty or None.
    """
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        value = tensors[name]
        t, dtype = value if isinstance(value, tuple) else (value, _NAME_OF[value.dtype])
        raw = tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        header["__metadata__"] = dict(metadata)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)))
        fh.write(text)
        for raw in blobs:
            fh.write(raw)
    return 8 + len(text) + offset


def read_safetensors(path):
    """Reads back what write_safetensors wrote, checking the layout: (tensors, metadata).

    Each tensor comes back in its stored dtype; metadata is {} when the file has none.
    """
    with open(path, "rb") as fh:
        buf = fh.read()
    (n,) = struct.unpack("<Q", buf[:8])
    assert n % 8 == 0
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    out = {}
    end = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = info["data_offsets"]
        assert b == end, "tensors must be contiguous"
        end = e
        torch_dtype, np_dtype = DTYPES[info["dtype"]]
        t = torch.from_numpy(np.frombuffer(buf[8 + n + b:8 + n + e], dtype=np_dtype).copy())
        out[name] = t.view(torch_dtype).reshape(info["shape"])
    assert 8 + n + end == len(buf)
    return out, metadata
