#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes tests/data/corrupt/*.safetensors: one small file per rule of the safetensors reader.

Each file breaks exactly one rule of a valid file; tests/unit/test_safetensors.cpp names the message
each must produce, and tests/fuzz uses the folder as seeds. Standard library only; rerun after editing:
    /usr/bin/python3 tests/data/make_corrupt.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corrupt")

F32_2 = '"dtype":"F32","shape":[2],"data_offsets":[0,8]'  # a valid 2-float tensor body
DATA8 = struct.pack("<2f", 1.0, -2.0)


def file(header, data=b"", length=None):
    """8-byte little-endian header length (default: the real one), the header, the data."""
    if isinstance(header, str):
        header = header.encode()
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def tensor(body, name="w"):
    return '{"%s":{%s}}' % (name, body)


CASES = {
    # The 8-byte header length.
    "too_short": b"\x08\x00\x00\x00\x00",
    "header_len_over_limit": file("{}", length=100_000_001),
    "header_len_max_u64": file("{}", length=2**64 - 1),
    "header_len_past_eof": file("{}", length=64),
    # The header's first byte and encoding.
    "header_empty": file(""),
    "header_leading_space": file(" {}"),
    "header_bom": file(b"\xef\xbb\xbf{}"),
    "header_array": file("[]"),
    "utf8_invalid_byte": file(b'{"w\xff":{' + F32_2.encode() + b"}}", DATA8),
    "utf8_overlong": file(b'{"\xc0\xaf":{' + F32_2.encode() + b"}}", DATA8),
    "utf8_surrogate": file(b'{"\xed\xa0\x80":{' + F32_2.encode() + b"}}", DATA8),
    "utf8_truncated": file(b'{"w":{' + F32_2.encode() + b'}, "\xe2\x82'),
    # JSON syntax.
    "json_syntax": file('{"w": }'),
    "json_truncated": file('{"w":{"dtype":"F32"'),
    "json_trailing_garbage": file("{} x"),
    "header_nul_padding": file(b"{}\x00\x00\x00\x00\x00\x00"),
    "header_nul_then_garbage": file(b'{}\x00{"w": 1, ]]'),
    "json_lone_surrogate_escape": file('{"\\ud800":{' + F32_2 + "}}", DATA8),
    "json_comment": file("{/* c */}"),
    # Duplicate keys and nesting.
    "duplicate_tensor": file('{"w":{%s},"w":{%s}}' % (F32_2, F32_2.replace("[0,8]", "[8,16]")), DATA8 * 2),
    "duplicate_metadata": file('{"__metadata__":{},"__metadata__":{}}'),
    "duplicate_field": file(tensor('"dtype":"F32",' + F32_2), DATA8),
    "duplicate_metadata_key": file('{"__metadata__":{"k":"a","k":"b"}}'),
    "nested_too_deep": file('{"__metadata__":{"k":{"a":{}}}}'),
    "shape_nested": file(tensor('"dtype":"F32","shape":[[2]],"data_offsets":[0,8]'), DATA8),
    # __metadata__.
    "metadata_not_object": file('{"__metadata__":["a"]}'),
    "metadata_value_number": file('{"__metadata__":{"k":1}}'),
    "metadata_value_object": file('{"__metadata__":{"k":{}}}'),
    # A tensor entry's fields.
    "tensor_not_object": file('{"w":[0,8]}'),
    "missing_dtype": file(tensor('"shape":[2],"data_offsets":[0,8]'), DATA8),
    "missing_shape": file(tensor('"dtype":"F32","data_offsets":[0,8]'), DATA8),
    "missing_data_offsets": file(tensor('"dtype":"F32","shape":[2]'), DATA8),
    "extra_field": file(tensor(F32_2 + ',"offsets":1'), DATA8),
    "dtype_not_string": file(tensor('"dtype":4,"shape":[2],"data_offsets":[0,8]'), DATA8),
    "dtype_unknown": file(tensor('"dtype":"F12","shape":[2],"data_offsets":[0,8]'), DATA8),
    "dtype_lowercase": file(tensor('"dtype":"f32","shape":[2],"data_offsets":[0,8]'), DATA8),
    "shape_not_array": file(tensor('"dtype":"F32","shape":2,"data_offsets":[0,8]'), DATA8),
    "shape_negative": file(tensor('"dtype":"F32","shape":[-2],"data_offsets":[0,8]'), DATA8),
    "shape_fraction": file(tensor('"dtype":"F32","shape":[2.0],"data_offsets":[0,8]'), DATA8),
    "shape_string": file(tensor('"dtype":"F32","shape":["2"],"data_offsets":[0,8]'), DATA8),
    "shape_null": file(tensor('"dtype":"F32","shape":[null],"data_offsets":[0,8]'), DATA8),
    "shape_beyond_int64": file(tensor('"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8]'), DATA8),
    "offsets_not_array": file(tensor('"dtype":"F32","shape":[2],"data_offsets":"0-8"'), DATA8),
    "offsets_one": file(tensor('"dtype":"F32","shape":[2],"data_offsets":[8]'), DATA8),
    "offsets_three": file(tensor('"dtype":"F32","shape":[2],"data_offsets":[0,8,8]'), DATA8),
    "offsets_negative": file(tensor('"dtype":"F32","shape":[2],"data_offsets":[-8,0]'), DATA8),
    "offsets_fraction": file(tensor('"dtype":"F32","shape":[2],"data_offsets":[0,8.5]'), DATA8),
    "offsets_reversed": file(tensor('"dtype":"F32","shape":[2],"data_offsets":[8,0]'), DATA8),
    # Sizes.
    "numel_overflow": file(tensor('"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,8]'), DATA8),
    "bytes_overflow": file(tensor('"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]'), DATA8),
    "size_too_small": file(tensor('"dtype":"F32","shape":[2,3],"data_offsets":[0,20]'), DATA8 * 3)[:-4],
    "size_too_large": file(tensor('"dtype":"F16","shape":[3],"data_offsets":[0,8]'), DATA8),
    # Layout of the data buffer.
    "offsets_past_end": file(tensor('"dtype":"F32","shape":[4],"data_offsets":[0,16]'), DATA8),
    "offsets_far_past_end": file(tensor('"dtype":"F32","shape":[0],"data_offsets":[4611686018427387904,4611686018427387904]')),
    "gap_at_start": file(tensor('"dtype":"F32","shape":[2],"data_offsets":[4,12]'), b"\0" * 4 + DATA8),
    "gap_between": file('{"a":{%s},"b":{%s}}' % (F32_2, F32_2.replace("[0,8]", "[12,20]")), DATA8 + b"\0" * 4 + DATA8),
    "overlap": file('{"a":{%s},"b":{%s}}' % (F32_2, F32_2.replace("[0,8]", "[4,12]")), DATA8 + b"\0" * 4),
    "overlap_same": file('{"a":{%s},"b":{%s}}' % (F32_2, F32_2), DATA8),
    "overlap_empty_inside": file('{"a":{%s},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}' % F32_2, DATA8),
    "trailing_bytes": file(tensor(F32_2), DATA8 + b"\0" * 4),
    "no_tensors_with_data": file("{}", DATA8),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        if old.endswith(".safetensors"):
            os.remove(os.path.join(OUT, old))
    for name, data in sorted(CASES.items()):
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)
    print("wrote %d files to %s" % (len(CASES), OUT))


if __name__ == "__main__":
    main()
