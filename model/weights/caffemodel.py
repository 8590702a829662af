"""Caffe `.caffemodel` files without Caffe: a protobuf wire-format reader and writer (docs/caffemodel.md §7).

A caffemodel is one serialized `caffe.NetParameter` (BVLC/caffe src/caffe/proto/caffe.proto).
Only the fields needed to get weights by layer name are decoded:

  NetParameter      layer (100, LayerParameter), layers (2, V1LayerParameter, legacy)
  LayerParameter    name (1), type (2, string), blobs (7)
  V1LayerParameter  layer (1, V0LayerParameter: name 1, type 2, blobs 50), name (4),
                    type (5, enum), blobs (6)
  BlobProto         num/channels/height/width (1-4, legacy dims), data (5, float),
                    shape (7, BlobShape: dim 1), double_data (8, double)

Everything else is skipped by wire type. Files are memory-mapped and the payloads of layers
that are not wanted are skipped without being copied. Malformed input raises ValueError
naming the layer and the byte offset.
"""
import math
import mmap
import os
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from lib.utils.atomic import atomic_path

CaffeLayer = namedtuple("CaffeLayer", "name type blobs")
CaffeLayer.__doc__ = """One layer of a caffemodel: name, type string, list of float32 numpy blobs.

For layers filtered out by `read_caffemodel(wanted=...)`, `blobs` holds one None per stored blob."""

# V1LayerParameter.LayerType -> LayerParameter.type (caffe.proto, upgrade_proto.cpp).
V1_TYPES = {
    0: "", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout",
    7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 11: "Im2col", 12: "ImageData",
    13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 16: "MultinomialLogisticLoss", 17: "Pooling",
    18: "ReLU", 19: "Sigmoid", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 23: "TanH",
    24: "WindowData", 25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss",
    29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice", 34: "MVN",
    35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp", 39: "Deconvolution",
}
_V1_ENUMS = {name: number for number, name in V1_TYPES.items() if name}

MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class _WireError(Exception):
    """Malformed input at absolute byte offset `offset` (turned into ValueError with context)."""

    def __init__(self, offset, message):
        super().__init__(message)
        self.offset = offset


# ------------------------------------------------------------------------------------- reading


def _varint(buf, pos, end):
    """(value mod 2**64, new_pos) of the base-128 varint at `pos`; at most 10 bytes."""
    value = 0
    for i in range(10):
        if pos + i >= end:
            raise _WireError(pos, "truncated varint")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos + i + 1
    raise _WireError(pos, "varint longer than 10 bytes")


def _next_field(buf, pos, end):
    """(field_number, wire_type, key_offset, value, new_pos) of the field at `pos`.

    value: the integer for varints, (begin, end) byte offsets for the other wire types.
    """
    key_pos = pos
    key, pos = _varint(buf, pos, end)
    number, wire = key >> 3, key & 7
    if number == 0 or number >= 1 << 29:
        raise _WireError(key_pos, f"invalid field number {number}")
    if wire == _VARINT:
        value, pos = _varint(buf, pos, end)
    elif wire in (_FIXED64, _FIXED32):
        size = 8 if wire == _FIXED64 else 4
        if size > end - pos:
            raise _WireError(key_pos, f"field {number}: fixed{size * 8} value runs past the end")
        value, pos = (pos, pos + size), pos + size
    elif wire == _LENGTH:
        size, pos = _varint(buf, pos, end)
        if size > end - pos:
            raise _WireError(key_pos, f"field {number}: length {size} runs past the end "
                                      f"({end - pos} bytes left)")
        value, pos = (pos, pos + size), pos + size
    else:
        raise _WireError(key_pos, f"field {number}: unsupported wire type {wire}")
    return number, wire, key_pos, value, pos


def _fields(buf, begin, end):
    """Yield (field_number, wire_type, key_offset, value) for the message in buf[begin:end]."""
    pos = begin
    while pos < end:
        number, wire, key_pos, value, pos = _next_field(buf, pos, end)
        yield number, wire, key_pos, value


def _expect(number, wire, key_pos, wanted_wire, what):
    if wire != wanted_wire:
        raise _WireError(key_pos, f"field {number} ({what}) has wire type {wire}, expected {wanted_wire}")


def _string(buf, span, key_pos):
    try:
        return bytes(buf[span[0]:span[1]]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise _WireError(key_pos, f"string is not UTF-8 ({e.reason})") from None


def _signed(value, bits, key_pos):
    """Two's-complement int64 of a varint; int32 fields must fit in 32 bits."""
    value = value - (1 << 64) if value >= 1 << 63 else value
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise _WireError(key_pos, f"int{bits} value out of range: {value}")
    return value


def _packed_floats(buf, span, key_pos, dtype):
    """float32 copy of a packed float / double payload."""
    begin, end = span
    size = np.dtype(dtype).itemsize
    if (end - begin) % size:
        raise _WireError(key_pos, f"packed payload of {end - begin} bytes is not a multiple of {size}")
    return np.frombuffer(buf, dtype, count=(end - begin) // size, offset=begin).astype(np.float32)


def _unpacked_floats(buf, pos, end, key_byte, dtype):
    """(float32 values, new_pos) of the run of unpacked values starting at `pos`.

    Each value is one key byte `key_byte` then the little-endian number; the whole run of
    consecutive same-key records is read at once.
    """
    record = np.dtype(dtype).itemsize + 1
    n = (end - pos) // record
    raw = np.frombuffer(buf, np.uint8, count=n * record, offset=pos).reshape(n, record)
    stops = np.flatnonzero(raw[:, 0] != key_byte)
    k = int(stops[0]) if stops.size else n
    values = raw[:k, 1:].copy().view(dtype).reshape(k).astype(np.float32)
    return values, pos + k * record


def _blob_dims(buf, span):
    """BlobShape.dim values (packed or unpacked int64 varints), at most MAX_BLOB_AXES of them."""
    dims = []
    for number, wire, key_pos, value in _fields(buf, *span):
        if number == 1 and wire == _LENGTH:
            pos, end = value
            while pos < end and len(dims) <= MAX_BLOB_AXES:
                dim, pos = _varint(buf, pos, end)
                dims.append(_signed(dim, 64, key_pos))
        elif number == 1:
            _expect(number, wire, key_pos, _VARINT, "BlobShape.dim")
            dims.append(_signed(value, 64, key_pos))
        if len(dims) > MAX_BLOB_AXES:
            raise _WireError(key_pos, f"blob shape has more than {MAX_BLOB_AXES} axes")
    return dims


def _blob(buf, span, blob_pos):
    """float32 numpy array of the BlobProto in buf[span]; shape from `shape`, else legacy 4-D dims.

    double_data wins over data, as in Caffe's Blob::FromProto; values are checked to be finite
    and their count to equal the product of the dims.
    """
    legacy = [1, 1, 1, 1]
    shape = None
    chunks = {5: [], 8: []}
    pos, end = span
    while pos < end:
        number, wire, key_pos, value, pos = _next_field(buf, pos, end)
        if number in (1, 2, 3, 4):
            _expect(number, wire, key_pos, _VARINT, "BlobProto legacy dim")
            legacy[number - 1] = _signed(value, 32, key_pos)
        elif number == 7:
            _expect(number, wire, key_pos, _LENGTH, "BlobProto.shape")
            shape = _blob_dims(buf, value)
        elif number in (5, 8):
            dtype = "<f4" if number == 5 else "<f8"
            if wire == _LENGTH:
                chunks[number].append(_packed_floats(buf, value, key_pos, dtype))
            else:
                _expect(number, wire, key_pos, _FIXED32 if number == 5 else _FIXED64, "BlobProto data")
                if buf[key_pos] == (number << 3) | wire:
                    run, pos = _unpacked_floats(buf, key_pos, end, (number << 3) | wire, dtype)
                else:  # key written as a non-minimal varint: one value
                    run = _packed_floats(buf, value, key_pos, dtype)
                chunks[number].append(run)
    shape = legacy if shape is None else shape
    if any(d < 0 for d in shape):
        raise _WireError(blob_pos, f"negative blob dimension in {shape}")
    values = chunks[8] or chunks[5]
    count = sum(v.size for v in values)
    if count != math.prod(shape):
        raise _WireError(blob_pos, f"blob holds {count} values but its shape {shape} needs {math.prod(shape)}")
    data = values[0] if len(values) == 1 else np.concatenate(values or [np.zeros(0, np.float32)])
    if not np.isfinite(data).all():
        raise _WireError(blob_pos, "blob contains NaN or infinite values")
    return data.reshape(shape)


def _layer_fields(buf, span, legacy, info):
    """Fill `info` (name, type, blob spans) from a LayerParameter, or a V1LayerParameter if legacy.

    A V1 layer may nest a V0LayerParameter (field 1: name 1, type 2, blobs 50); its values are
    used where the V1 fields are absent.
    """
    name_field, type_field, blobs_field = (4, 5, 6) if legacy else (1, 2, 7)
    for number, wire, key_pos, value in _fields(buf, *span):
        if number == name_field:
            _expect(number, wire, key_pos, _LENGTH, "name")
            info["name"] = _string(buf, value, key_pos)
        elif number == type_field and legacy:
            _expect(number, wire, key_pos, _VARINT, "V1 type")
            info["type"] = V1_TYPES.get(value, f"V1 type {value}")
        elif number == type_field:
            _expect(number, wire, key_pos, _LENGTH, "type")
            info["type"] = _string(buf, value, key_pos)
        elif number == blobs_field:
            _expect(number, wire, key_pos, _LENGTH, "blobs")
            info["blobs"].append((key_pos, value))
        elif legacy and number == 1:
            _expect(number, wire, key_pos, _LENGTH, "V0 layer")
            v0 = {"name": None, "type": None, "blobs": []}
            _v0_fields(buf, value, v0)
            info["name"] = info["name"] if info["name"] is not None else v0["name"]
            info["type"] = info["type"] if info["type"] is not None else v0["type"]
            info["blobs"].extend(v0["blobs"])


def _v0_fields(buf, span, info):
    for number, wire, key_pos, value in _fields(buf, *span):
        if number in (1, 2):
            _expect(number, wire, key_pos, _LENGTH, "V0 name/type")
            info["name" if number == 1 else "type"] = _string(buf, value, key_pos)
        elif number == 50:
            _expect(number, wire, key_pos, _LENGTH, "V0 blobs")
            info["blobs"].append((key_pos, value))


def _read(buf, wanted, source):
    layers = []
    try:
        for number, wire, key_pos, value in _fields(buf, 0, len(buf)):
            if number not in (100, 2):
                continue
            _expect(number, wire, key_pos, _LENGTH, "layer" if number == 100 else "layers")
            info = {"name": None, "type": None, "blobs": []}
            try:
                _layer_fields(buf, value, number == 2, info)
                name = info["name"] or ""
                decode = wanted is None or name in wanted
                blobs = [_blob(buf, span, pos) if decode else None for pos, span in info["blobs"]]
            except _WireError as e:
                raise ValueError(f"{source}: layer #{len(layers)} {info['name']!r}, byte {e.offset}: {e}") from None
            layers.append(CaffeLayer(name, info["type"] or "", blobs))
    except _WireError as e:
        raise ValueError(f"{source}: NetParameter, byte {e.offset}: {e}") from None
    return layers


def read_caffemodel(source, wanted=None):
    """Layers of a caffemodel, in file order, as a list of CaffeLayer(name, type, blobs).

    source: a file path or the file's bytes. wanted: None to decode every layer's blobs, or a
    container of layer names; other layers keep a None per blob and their payloads are skipped
    without being read into memory (the file is memory-mapped). Blobs are float32 arrays in the
    stored shape (legacy files: 4-D num x channels x height x width).
    Raises FileNotFoundError for a missing file, ValueError (layer, byte offset) for bad input.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _read(memoryview(source).cast("B"), wanted, "<bytes>")
    path = os.fspath(source)
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return []
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return _read(mapped, wanted, path)


# ------------------------------------------------------------------------------------- writing


def _encode_varint(value):
    out = bytearray()
    value &= 0xFFFFFFFFFFFFFFFF
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number, wire):
    return _encode_varint((number << 3) | wire)


def _length_delimited(number, payload):
    return _key(number, _LENGTH) + _encode_varint(len(payload)) + payload


def _blob_bytes(array, legacy, packed):
    """Serialized BlobProto of a float array: shape (or legacy 4-D dims) then float32 data."""
    data = np.ascontiguousarray(array, dtype="<f4")
    if legacy:
        if data.ndim > 4:
            raise ValueError(f"legacy blobs have at most 4 axes, got shape {data.shape}")
        dims = (1,) * (4 - data.ndim) + data.shape
        head = b"".join(_key(i + 1, _VARINT) + _encode_varint(d) for i, d in enumerate(dims))
    else:
        head = _length_delimited(7, _length_delimited(1, b"".join(_encode_varint(d) for d in data.shape)))
    if packed:
        return head + _length_delimited(5, data.tobytes())
    records = np.empty(data.size, dtype=[("key", "u1"), ("value", "<f4")])
    records["key"] = (5 << 3) | _FIXED32
    records["value"] = data.reshape(-1)
    return head + records.tobytes()


def _layer_bytes(name, type_, blobs, legacy, packed):
    blobs = [_blob_bytes(np.asarray(b.detach().cpu() if hasattr(b, "detach") else b), legacy, packed)
             for b in blobs]
    if not legacy:
        body = _length_delimited(1, name.encode()) + _length_delimited(2, type_.encode())
        return _length_delimited(100, body + b"".join(_length_delimited(7, b) for b in blobs))
    if type_ not in _V1_ENUMS:
        raise ValueError(f"layer {name!r}: type {type_!r} has no V1 (legacy) enum value")
    body = (_length_delimited(4, name.encode()) + _key(5, _VARINT) + _encode_varint(_V1_ENUMS[type_])
            + b"".join(_length_delimited(6, b) for b in blobs))
    return _length_delimited(2, body)


def write_caffemodel(path, layers, legacy=False, packed=True):
    """Write a caffemodel holding `layers`, an iterable of (name, type, blobs), atomically.

    blobs: float arrays or tensors, stored as float32. legacy=True writes the V1 `layers` (2)
    format with 4-D num/channels/height/width dims (biases 1 x 1 x 1 x C); packed=False writes
    one key per float (the unpacked encoding). The file appears only once fully written.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for name, type_, blobs in layers:
            f.write(_layer_bytes(name, type_, blobs, legacy, packed))


# ------------------------------------------------------------------------------- name matching


@dataclass(frozen=True)
class LoadReport:
    """Outcome of matching a caffemodel to a network, by official layer name (file order).

    loaded: layers copied into the network; missing: network layers absent from the file;
    skipped: layers of the file with blobs the network has no place for (fc6..fc8 of VGG16,
    the `_ohem` copies of the SSH training net), never decoded; duplicates: network layers
    stored more than once (checked equal, first occurrence used).
    """

    loaded: tuple = ()
    missing: tuple = ()
    skipped: tuple = ()
    duplicates: tuple = ()


def _same_shape(stored, expected):
    """Shapes agree up to size-1 axes (legacy files store biases as 1 x 1 x 1 x C)."""
    return [d for d in stored if d != 1] == [d for d in expected if d != 1]


def select_blobs(layers, expected, strict=True, source="caffemodel"):
    """({name: [float32 arrays in the expected shapes]}, LoadReport) for the layers named in `expected`.

    layers: read_caffemodel output; expected: {official layer name: tuple of blob shapes}.
    The first occurrence of a name is used and later ones must hold equal values (the SSH
    training snapshot stores `mi@ssh_7x7` twice). A blob count or shape mismatch raises
    ValueError naming the layer; so does a missing layer when strict.
    """
    found, duplicates, skipped = {}, [], []
    for layer in layers:
        if layer.name not in expected:
            if layer.blobs and layer.name not in skipped:
                skipped.append(layer.name)
            continue
        shapes = expected[layer.name]
        if len(layer.blobs) != len(shapes):
            raise ValueError(f"{source}: layer {layer.name!r} has {len(layer.blobs)} blobs, expected {len(shapes)}")
        for blob, shape in zip(layer.blobs, shapes):
            if not _same_shape(blob.shape, shape):
                raise ValueError(f"{source}: layer {layer.name!r} blob of shape {tuple(blob.shape)} "
                                 f"does not fit the parameter of shape {tuple(shape)}")
        arrays = [blob.reshape(shape) for blob, shape in zip(layer.blobs, shapes)]
        if layer.name not in found:
            found[layer.name] = arrays
            continue
        if not all(np.array_equal(a, b) for a, b in zip(arrays, found[layer.name])):
            raise ValueError(f"{source}: layer {layer.name!r} occurs twice with different values")
        if layer.name not in duplicates:
            duplicates.append(layer.name)
    missing = tuple(name for name in expected if name not in found)
    if strict and missing:
        raise ValueError(f"{source}: missing layers {', '.join(missing)}")
    report = LoadReport(tuple(found), missing, tuple(skipped), tuple(duplicates))
    return found, report
