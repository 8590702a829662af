"""model/weights/caffemodel.py against hand-encoded protobuf bytes (key bytes from docs/caffemodel.md §7.2 / caffe.proto)."""
import os
import tracemalloc

import numpy as np
import pytest

from model.weights.caffemodel import CaffeLayer, read_caffemodel, select_blobs, write_caffemodel


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def ld(key, payload):
    """Length-delimited field: key bytes, varint length, payload."""
    return key + varint(len(payload)) + payload


def f32(values):
    return np.asarray(values, "<f4").tobytes()


def blob(shape, values):
    """BlobProto: shape (0x3A) { dim packed (0x0A) }, data packed (0x2A)."""
    return ld(b"\x3a", ld(b"\x0a", b"".join(varint(d) for d in shape))) + ld(b"\x2a", f32(values))


def layer(name, type_, *blobs):
    """NetParameter.layer (0xA2 0x06): name (0x0A), type (0x12), blobs (0x3A)."""
    return ld(b"\xa2\x06", ld(b"\x0a", name.encode()) + ld(b"\x12", type_.encode())
              + b"".join(ld(b"\x3a", b) for b in blobs))


def legacy_blob(dims, values):
    """BlobProto with legacy num/channels/height/width (0x08 0x10 0x18 0x20) and unpacked data (0x2D)."""
    keys = (b"\x08", b"\x10", b"\x18", b"\x20")
    return (b"".join(k + varint(d) for k, d in zip(keys, dims))
            + b"".join(b"\x2d" + f32([v]) for v in values))


def v1_layer(name, type_enum, *blobs):
    """NetParameter.layers (0x12): V1 name (0x22), type enum (0x28), blobs (0x32)."""
    return ld(b"\x12", ld(b"\x22", name.encode()) + b"\x28" + varint(type_enum)
              + b"".join(ld(b"\x32", b) for b in blobs))


W = np.arange(6, dtype=np.float32).reshape(2, 1, 1, 3) - 2.5
B = np.array([0.5, -7.25], np.float32)
CURRENT = layer("conv", "Convolution", blob(W.shape, W.ravel()), blob(B.shape, B)) + layer("relu", "ReLU")
LEGACY = v1_layer("conv", 4, legacy_blob((2, 1, 1, 3), W.ravel()), legacy_blob((1, 1, 1, 2), B)) + v1_layer("relu", 18)


def assert_layers(got, expected):
    assert [(l.name, l.type, len(l.blobs)) for l in got] == [(l.name, l.type, len(l.blobs)) for l in expected]
    for g, e in zip(got, expected):
        for a, b in zip(g.blobs, e.blobs):
            assert a.dtype == np.float32 and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_current_format():
    got = read_caffemodel(ld(b"\x0a", b"SSH") + CURRENT)
    assert_layers(got, [CaffeLayer("conv", "Convolution", [W, B]), CaffeLayer("relu", "ReLU", [])])


def test_legacy_v1_unpacked():
    got = read_caffemodel(LEGACY)
    assert_layers(got, [CaffeLayer("conv", "Convolution", [W, B.reshape(1, 1, 1, 2)]),
                        CaffeLayer("relu", "ReLU", [])])


def test_legacy_missing_dims_default_to_one():
    got = read_caffemodel(v1_layer("b", 4, b"\x20\x03" + b"".join(b"\x2d" + f32([v]) for v in (1, 2, 3))))
    assert got[0].blobs[0].shape == (1, 1, 1, 3)


def test_v0_nested_layer():
    v0 = ld(b"\x0a", b"conv") + ld(b"\x12", b"conv") + ld(b"\x92\x03", blob((2,), B))  # blobs = field 50
    got = read_caffemodel(ld(b"\x12", ld(b"\x0a", v0)))
    assert_layers(got, [CaffeLayer("conv", "conv", [B])])


def test_double_data_packed_unpacked_and_preferred():
    d = np.array([1.5, -2.0, 1e-3], "<f8")
    packed = ld(b"\x3a", ld(b"\x0a", b"\x03")) + ld(b"\x42", d.tobytes())
    unpacked = ld(b"\x3a", ld(b"\x0a", b"\x03")) + b"".join(b"\x41" + v.tobytes() for v in d)
    both = packed + ld(b"\x2a", f32([9, 9, 9]))  # Caffe's Blob::FromProto uses double_data first
    for payload in (packed, unpacked, both):
        got = read_caffemodel(layer("d", "Scale", payload))[0].blobs[0]
        np.testing.assert_array_equal(got, d.astype(np.float32))


def test_unpacked_dims_and_mixed_data_chunks():
    shape = b"\x08\x02\x08\x03"  # BlobShape.dim unpacked: 2, 3
    data = ld(b"\x2a", f32([0, 1])) + b"".join(b"\x2d" + f32([v]) for v in (2, 3)) + ld(b"\x2a", f32([4, 5]))
    got = read_caffemodel(layer("x", "InnerProduct", ld(b"\x3a", shape) + data))[0].blobs[0]
    np.testing.assert_array_equal(got, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_unknown_fields_are_skipped():
    junk = (varint(99 << 3 | 0) + varint(2 ** 63) + varint(98 << 3 | 1) + b"\x01" * 8
            + varint(97 << 3 | 5) + b"\x02" * 4 + ld(varint(96 << 3 | 2), b"\xff" * 5))
    blob_w = junk + blob(W.shape, W.ravel()) + ld(b"\x32", f32([1] * 6)) + ld(b"\x4a", b"\x00" * 8)
    body = (junk + ld(b"\x0a", b"conv") + ld(b"\x1a", b"data") + ld(b"\x22", b"conv") + ld(b"\x12", b"Convolution")
            + ld(b"\x32", b"\x08\x01") + ld(b"\x3a", blob_w) + ld(b"\x3a", blob(B.shape, B)))
    data = junk + ld(b"\x1a", b"data") + ld(b"\xa2\x06", body) + junk
    assert_layers(read_caffemodel(data), [CaffeLayer("conv", "Convolution", [W, B])])


def test_writer_bytes_follow_the_spec(tmp_path):
    write_caffemodel(tmp_path / "a.caffemodel", [("conv", "Convolution", [W, B]), ("relu", "ReLU", [])])
    assert (tmp_path / "a.caffemodel").read_bytes() == CURRENT
    write_caffemodel(tmp_path / "b.caffemodel", [("conv", "Convolution", [W, B]), ("relu", "ReLU", [])],
                     legacy=True, packed=False)
    assert (tmp_path / "b.caffemodel").read_bytes() == LEGACY


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_round_trip(tmp_path, legacy, packed):
    rng = np.random.default_rng(0)
    blobs = [rng.normal(size=s).astype(np.float32) for s in ((4, 3, 3, 3), (4,), (5, 12))]
    path = tmp_path / "m.caffemodel"
    write_caffemodel(path, [("conv", "Convolution", blobs[:2]), ("fc", "InnerProduct", blobs[2:])],
                     legacy=legacy, packed=packed)
    got = read_caffemodel(path)
    assert [l.type for l in got] == ["Convolution", "InnerProduct"]
    shapes = [b.shape for l in got for b in l.blobs]
    assert shapes == ([(4, 3, 3, 3), (1, 1, 1, 4), (1, 1, 5, 12)] if legacy else [b.shape for b in blobs])
    for a, b in zip([b for l in got for b in l.blobs], blobs):
        np.testing.assert_array_equal(a.reshape(b.shape), b)


def test_unwanted_payloads_are_not_materialised(tmp_path):
    path = tmp_path / "vgg.caffemodel"
    fc6 = np.ones((2048, 4096), np.float32)  # 32 MB
    write_caffemodel(path, [("conv1_1", "Convolution", [W, B]), ("fc6", "InnerProduct", [fc6, np.ones(2048)])])
    del fc6
    tracemalloc.start()
    try:
        got = read_caffemodel(path, wanted={"conv1_1"})
        _, peak_skipped = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        read_caffemodel(path)
        _, peak_all = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got[1].name == "fc6" and got[1].blobs == [None, None]
    np.testing.assert_array_equal(got[0].blobs[0], W)
    assert peak_all > 32e6  # tracemalloc sees numpy buffers
    assert peak_skipped < 1e6


def test_file_errors(tmp_path):
    missing = tmp_path / "nope.caffemodel"
    with pytest.raises(FileNotFoundError, match="nope.caffemodel"):
        read_caffemodel(missing)
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    assert read_caffemodel(tmp_path / "empty.caffemodel") == []
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(CURRENT[:-7])
    with pytest.raises(ValueError, match=r"bad\.caffemodel: NetParameter, byte 75: field 100: length 12 runs past"):
        read_caffemodel(bad)


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "m.caffemodel"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="at most 4 axes"):
        write_caffemodel(path, [("conv", "Convolution", [W]), ("x", "Convolution", [np.zeros((1,) * 5)])],
                         legacy=True)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.caffemodel"]


def _name(name):
    return ld(b"\x0a", name.encode())


HOSTILE = {
    "truncated key": (b"\xa2", r"NetParameter, byte 0: truncated varint"),
    "11-byte varint": (b"\xa2\x06" + b"\xff" * 10 + b"\x01", r"byte 2: varint longer than 10 bytes"),
    "length past end": (b"\xa2\x06\x7f\x00\x00", r"byte 0: field 100: length 127 runs past the end \(2 bytes left\)"),
    "huge length": (b"\xa2\x06" + varint(2 ** 63), r"field 100: length 9223372036854775808 runs past"),
    "layer as varint": (b"\xa0\x06\x01", r"field 100 \(layer\) has wire type 0, expected 2"),
    "group wire type": (b"\x0b\x0c", r"byte 0: field 1: unsupported wire type 3"),
    "field number 0": (b"\x02\x00", r"invalid field number 0"),
    "fixed32 past end": (b"\x0d\x00\x00", r"fixed32 value runs past the end"),
    "blob past layer end": (ld(b"\xa2\x06", _name("conv") + b"\x3a\x05\x00") + b"\x00" * 8,
                            r"layer #0 'conv', byte \d+: field 7: length 5 runs past the end \(1 bytes left\)"),
    "NaN": (layer("conv", "Convolution", blob((2,), [1, np.nan])), r"layer #0 'conv', byte \d+: .*NaN"),
    "inf": (layer("conv", "Convolution", blob((1,), [-np.inf])), r"layer #0 'conv'.*NaN or infinite"),
    "count mismatch": (layer("conv", "Convolution", blob((2, 3), range(5))),
                       r"'conv'.*holds 5 values but its shape \[2, 3\] needs 6"),
    "negative dim": (layer("conv", "Convolution", blob((-2, -3), range(6))), r"negative blob dimension"),
    "absurd dims": (layer("conv", "Convolution", blob((2 ** 40, 2 ** 40), range(2))),
                    r"holds 2 values but its shape \[1099511627776, 1099511627776\] needs"),
    "too many axes": (layer("conv", "Convolution", blob((1,) * 40, [1])), r"more than 32 axes"),
    "ragged packed floats": (layer("conv", "Convolution", ld(b"\x2a", b"\x00" * 5)), r"5 bytes is not a multiple of 4"),
    "name not UTF-8": (ld(b"\xa2\x06", ld(b"\x0a", b"\xff\xfe")), r"layer #0 None, byte 3: string is not UTF-8"),
    "legacy dim > int32": (v1_layer("fc", 14, b"\x08" + varint(2 ** 33)), r"'fc'.*int32 value out of range"),
    "V1 type as string": (ld(b"\x12", ld(b"\x2a", b"Convolution")), r"field 5 \(V1 type\) has wire type 2"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input_raises_value_error(case):
    data, message = HOSTILE[case]
    with pytest.raises(ValueError, match=message):
        read_caffemodel(data)


def test_fuzz_truncations_and_flips():
    rng = np.random.default_rng(1234)
    sources = [ld(b"\x0a", b"SSH") + CURRENT + layer("fc", "InnerProduct", blob((3, 4), range(12))), LEGACY]
    outcomes = {"loaded": 0, "ValueError": 0}
    for i in range(3000):
        data = bytearray(sources[i % 2])
        kind = rng.integers(3)
        if kind == 0:
            data = data[:rng.integers(len(data))]
        elif kind == 1:
            for pos in rng.integers(len(data), size=rng.integers(1, 4)):
                data[pos] = rng.integers(256)
        else:
            pos = rng.integers(len(data))
            data[pos:pos] = rng.integers(256, size=rng.integers(1, 12)).astype(np.uint8).tobytes()
        try:
            read_caffemodel(bytes(data))
            outcomes["loaded"] += 1
        except ValueError:
            outcomes["ValueError"] += 1
    assert min(outcomes.values()) > 50, outcomes


def test_select_blobs_rules():
    expected = {"conv": [(2, 1, 1, 3), (2,)], "head": [(2, 3)]}
    head = np.arange(6, dtype=np.float32).reshape(2, 3)
    layers = [CaffeLayer("data", "Python", []), CaffeLayer("conv", "Convolution", [W, B.reshape(1, 1, 1, 2)]),
              CaffeLayer("conv_ohem", "Convolution", [None, None]), CaffeLayer("head", "Convolution", [head]),
              CaffeLayer("conv", "Convolution", [W, B])]
    found, report = select_blobs(layers, expected)
    assert found["conv"][1].shape == (2,) and np.array_equal(found["head"][0], head)
    assert (report.loaded, report.missing, report.skipped, report.duplicates) == (
        ("conv", "head"), (), ("conv_ohem",), ("conv",))

    with pytest.raises(ValueError, match="layer 'conv' occurs twice with different values"):
        select_blobs(layers + [CaffeLayer("conv", "Convolution", [W, -B])], expected)
    with pytest.raises(ValueError, match="missing layers head"):
        select_blobs(layers[:3], expected)
    _, report = select_blobs(layers[:3], expected, strict=False)
    assert report.loaded == ("conv",) and report.missing == ("head",)
    with pytest.raises(ValueError, match=r"layer 'head' blob of shape \(3, 2\) does not fit .* \(2, 3\)"):
        select_blobs([CaffeLayer("head", "Convolution", [head.reshape(3, 2)])], expected, strict=False)
    with pytest.raises(ValueError, match="layer 'conv' has 1 blobs, expected 2"):
        select_blobs([CaffeLayer("conv", "Convolution", [W])], expected, strict=False)
