"""Weight files: .nis and Keras .h5 round trips, float16, and clear errors on bad or hostile files."""
import json
import os
import signal
import struct
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import nis_fast as nf
from nis_fast import io
from nis_fast.core import files
from nis_fast.core import layout as network
from nis_fast.core.normalization import Normalization


@pytest.fixture
def shape():
    params = torch.from_numpy(network.glorot_uniform(7)) + 0.01  # biases non-zero too
    transform = Normalization(np.array([1.5, -2.0, 0.25]), 0.37)
    return nf.NeuralSDF(params, transform, {"recipe": {"epochs": 3}, "source": {"name": "unit-test"}})


def _bits(t):
    return t.numpy().view(np.uint32)


def test_nis_round_trip_is_bit_exact(shape, tmp_path):
    path = tmp_path / "a.nis"
    shape.save(path)
    back = nf.load(path)
    assert np.array_equal(_bits(back.params), _bits(shape.params))
    assert back.transform.to_dict() == shape.transform.to_dict()
    assert back.metadata["recipe"] == {"epochs": 3} and back.metadata["source"] == {"name": "unit-test"}
    assert back.metadata["nis_fast_version"] == nf.__version__
    p = np.random.default_rng(0).normal(size=(100, 3))
    assert np.array_equal(back.sdf(p), shape.sdf(p))
    assert [f.name for f in tmp_path.iterdir()] == ["a.nis"]  # no temp file left


def test_nis_is_a_plain_safetensors_file(shape, tmp_path):
    from safetensors import safe_open

    shape.save(tmp_path / "a.nis")
    with safe_open(tmp_path / "a.nis", "np") as f:
        assert list(f.keys()) == ["params"]
        doc = json.loads(f.metadata()["nis"])
        assert f.get_tensor("params").dtype == np.float32
    assert doc["format"] == io.FORMAT_NAME and doc["architecture"]["n_params"] == 7553
    assert doc["architecture"]["activation"] == "relu" and doc["architecture"]["output_activation"] == "tanh"


def test_float16_nis_within_half_precision(shape, tmp_path):
    shape.save(tmp_path / "h.nis", dtype="float16")
    back = nf.load(tmp_path / "h.nis")
    assert back.metadata["dtype"] == "float16"
    shape.save(tmp_path / "f.nis")
    assert os.path.getsize(tmp_path / "h.nis") < os.path.getsize(tmp_path / "f.nis") - 7553
    err = (back.params - shape.params).abs()
    assert torch.all(err <= shape.params.abs() * 2**-11 + 2**-24)
    assert 0 < err.max() < 1e-3


def test_h5_round_trips_bit_exact_and_keeps_transform(shape, tmp_path):
    shape.save(tmp_path / "a.h5")
    back = nf.load(tmp_path / "a.h5")
    assert np.array_equal(_bits(back.params), _bits(shape.params))
    assert back.transform.to_dict() == shape.transform.to_dict()
    io.convert(tmp_path / "a.h5", tmp_path / "b.nis")
    io.convert(tmp_path / "b.nis", tmp_path / "c.h5")
    assert np.array_equal(_bits(nf.load(tmp_path / "c.h5").params), _bits(shape.params))


def test_h5_layout_mirrors_the_released_files(shape, tmp_path):
    from conftest import PAPER_WEIGHTS

    released = PAPER_WEIGHTS / "thingi10k_32770_sf.h5"
    if not released.exists():
        pytest.skip(f"{released} not found")
    shape.save(tmp_path / "ours.h5")

    def layout(path):
        with h5py.File(path, "r") as f:
            items = []
            f.visititems(lambda name, obj: items.append((name, getattr(obj, "shape", None),
                                                         {k: np.asarray(v).tolist() for k, v in obj.attrs.items()})))
            return items, {k: np.asarray(v).tolist() for k, v in f.attrs.items() if k != "nis"}

    assert layout(tmp_path / "ours.h5") == layout(released)


def test_released_h5_loads_with_identity_and_note():
    from conftest import PAPER_WEIGHTS

    path = PAPER_WEIGHTS / "car_1.h5"
    if not path.exists():
        pytest.skip(f"{path} not found")
    shape = nf.load(path)
    assert shape.transform.scale == 1.0 and not shape.transform.center.any()
    assert any("identity" in note for note in shape.metadata["notes"])
    info = io.describe(path)
    assert info["format"] == "keras-h5" and info["architecture"]["n_params"] == 7553


def test_describe_nis(shape, tmp_path):
    shape.save(tmp_path / "a.nis", dtype="float16")
    info = io.describe(tmp_path / "a.nis")
    assert info["format"] == "nis" and info["dtype"] == "float16"
    assert info["transform"] == shape.transform.to_dict() and info["source"] == {"name": "unit-test"}
    json.dumps(info)  # printable as JSON


# --- bad and hostile files ---------------------------------------------------------

def _expect_error(path, *words):
    with pytest.raises(io.NisFileError) as info:
        nf.load(path)
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, message
    return message


def test_empty_random_and_truncated_files(shape, tmp_path):
    good = tmp_path / "good.nis"
    shape.save(good)
    data = good.read_bytes()
    (tmp_path / "empty.nis").write_bytes(b"")
    _expect_error(tmp_path / "empty.nis", "empty")
    (tmp_path / "random.nis").write_bytes(np.random.default_rng(1).bytes(5000))
    _expect_error(tmp_path / "random.nis")
    for cut in (3, 8, 100, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.nis").write_bytes(data[:cut])
        _expect_error(tmp_path / "cut.nis")
    (tmp_path / "long.nis").write_bytes(data + b"\0\0\0\0")
    _expect_error(tmp_path / "long.nis", "padded")
    (tmp_path / "missing.nis").unlink(missing_ok=True)
    _expect_error(tmp_path / "missing.nis", "cannot be read")


def test_every_flipped_byte_is_caught(shape, tmp_path):
    good = tmp_path / "good.nis"
    shape.save(good)
    data = bytearray(good.read_bytes())
    header_end = 8 + int.from_bytes(data[:8], "little")
    positions = list(range(0, header_end, 3)) + list(range(header_end, len(data), 97)) + [len(data) - 1]
    for i in positions:
        bad = bytearray(data)
        bad[i] ^= 0x5A
        (tmp_path / "bad.nis").write_bytes(bytes(bad))
        _expect_error(tmp_path / "bad.nis")


def _rewrite(path, out, edit_header=None, edit_doc=None, fix_checksum=True):
    """Re-encode a .nis with an edited header/document (a forger who recomputes the checksum)."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    if edit_doc:
        doc = json.loads(header["__metadata__"]["nis"])
        edit_doc(doc)
        header["__metadata__"]["nis"] = json.dumps(doc)
    if fix_checksum:
        header["__metadata__"]["nis_checksum"] = io._checksum(header["__metadata__"]["nis"], body)
    if edit_header:
        body = edit_header(header, body) or body
    text = json.dumps(header).encode()
    out.write_bytes(struct.pack("<Q", len(text)) + text + body)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(format="something.else"), ["format"]),
    (lambda d: d.update(version=99), ["version 99", "not supported"]),
    (lambda d: d["architecture"].update(activation="sigmoid"), ["architecture"]),
    (lambda d: d["architecture"]["layers"].pop(), ["architecture"]),
    (lambda d: d.update(transform={"center": [0, 0, 0], "scale": -1}), ["transform"]),
    (lambda d: d.update(transform={"center": [0, 0], "scale": 1}), ["transform"]),
    (lambda d: d.pop("transform"), ["transform"]),
])
def test_consistent_but_wrong_documents(shape, tmp_path, edit, words):
    shape.save(tmp_path / "good.nis")
    _rewrite(tmp_path / "good.nis", tmp_path / "bad.nis", edit_doc=edit)
    _expect_error(tmp_path / "bad.nis", *words)


def test_changed_json_without_checksum_is_caught(shape, tmp_path):
    shape.save(tmp_path / "good.nis")
    _rewrite(tmp_path / "good.nis", tmp_path / "bad.nis", edit_doc=lambda d: d.update(metrics={"grid_l1": 0}),
             fix_checksum=False)
    _expect_error(tmp_path / "bad.nis", "checksum")


def test_foreign_safetensors_files(shape, tmp_path):
    from safetensors.numpy import save_file

    save_file({"weights": np.zeros(7553, np.float32)}, tmp_path / "name.nis")
    _expect_error(tmp_path / "name.nis", "'params'")
    save_file({"params": np.zeros(7552, np.float32)}, tmp_path / "shape.nis")
    _expect_error(tmp_path / "shape.nis", "shape", "7553")
    save_file({"params": np.zeros(7553, np.float64)}, tmp_path / "dtype.nis")
    _expect_error(tmp_path / "dtype.nis", "F32 or F16")
    save_file({"params": np.zeros(7553, np.float32)}, tmp_path / "nometa.nis")
    _expect_error(tmp_path / "nometa.nis", "metadata")
    save_file({"params": np.zeros(7553, np.float32), "extra": np.zeros(1, np.float32)}, tmp_path / "two.nis")
    _expect_error(tmp_path / "two.nis", "exactly one tensor")


def test_non_finite_parameters(shape, tmp_path):
    shape.save(tmp_path / "good.nis")

    def nan_body(header, body):
        return np.full(7553, np.nan, np.float32).tobytes()

    _rewrite(tmp_path / "good.nis", tmp_path / "bad.nis", edit_header=nan_body, fix_checksum=False)
    _expect_error(tmp_path / "bad.nis")  # checksum first
    bad = np.full(7553, np.nan, np.float32)
    with pytest.raises(ValueError, match="finite"):
        io.save_nis(tmp_path / "x.nis", bad)
    with pytest.raises(ValueError, match="float16"):
        io.save_nis(tmp_path / "x.nis", np.full(7553, 1e6, np.float32), dtype="float16")
    assert not (tmp_path / "x.nis").exists()


def test_bad_h5_files(shape, tmp_path):
    (tmp_path / "random.h5").write_bytes(np.random.default_rng(2).bytes(3000))
    _expect_error(tmp_path / "random.h5", "HDF5")
    shape.save(tmp_path / "good.h5")
    (tmp_path / "cut.h5").write_bytes((tmp_path / "good.h5").read_bytes()[:20000])
    _expect_error(tmp_path / "cut.h5")
    with h5py.File(tmp_path / "wide.h5", "w") as f:
        f.attrs["layer_names"] = np.array([b"dense"])
    _expect_error(tmp_path / "wide.h5", "Dense layers")
    shape.save(tmp_path / "shape.h5")
    with h5py.File(tmp_path / "shape.h5", "a") as f:
        del f["dense_3/dense_3/kernel:0"]
        f["dense_3/dense_3"].create_dataset("kernel:0", data=np.zeros((32, 16), np.float32))
    _expect_error(tmp_path / "shape.h5", "dense_3")
    _expect_error(tmp_path / "nothing.xyz", "extension")


def test_failed_write_leaves_nothing(shape, tmp_path):
    target = tmp_path / "a.nis"
    shape.save(target)
    before = target.read_bytes()

    def boom(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.atomic_write(target, boom)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nis"]


def test_written_files_get_the_usual_mode(shape, tmp_path):
    import stat

    shape.save(tmp_path / "new.nis")
    assert stat.S_IMODE(os.stat(tmp_path / "new.nis").st_mode) == 0o666 & ~files._UMASK  # not mkstemp's 0600
    os.chmod(tmp_path / "new.nis", 0o640)
    shape.save(tmp_path / "new.nis")
    assert stat.S_IMODE(os.stat(tmp_path / "new.nis").st_mode) == 0o640  # an overwrite keeps the mode


def _forge(path, header_fn):
    """Rewrite a .nis with its safetensors header changed by header_fn(dict) -> str."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = header_fn(json.loads(data[8:8 + n]))
    raw = header.encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])


@pytest.mark.parametrize("change", ["deep", "dtype_list", "metadata_type", "unknown_key"])
def test_hostile_headers_get_one_clear_error(shape, tmp_path, change):
    path = tmp_path / "evil.nis"
    shape.save(path)

    def forge(header):
        if change == "deep":
            return "[" * 200_000
        if change == "dtype_list":
            header["params"]["dtype"] = ["F32"]
            return json.dumps(header)
        doc = json.loads(header["__metadata__"]["nis"])
        if change == "metadata_type":
            doc["source"] = "evil"
        else:
            doc["name"] = "x\nint evil(void) { return 0; }"
        header["__metadata__"]["nis"] = json.dumps(doc)
        body = path.read_bytes()[8 + int.from_bytes(path.read_bytes()[:8], "little"):]
        header["__metadata__"]["nis_checksum"] = io._checksum(header["__metadata__"]["nis"], body)
        return json.dumps(header)

    _forge(path, forge)
    with pytest.raises(io.NisFileError, match="evil.nis"):
        nf.load(path)


# --- int8 files (core.quantize) ----------------------------------------------------------

def _doc_and_tensors(path):
    from safetensors.numpy import load_file

    data = path.read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    return json.loads(header["__metadata__"]["nis"]), load_file(path)


def _write_nis(path, doc, tensors):
    """A .nis file as our writer would make it from this document and these tensors (checksum and all)."""
    from safetensors.numpy import save

    doc_text = json.dumps(doc, sort_keys=True)
    blob = save(tensors, metadata={"nis": doc_text})
    body = blob[8 + int.from_bytes(blob[:8], "little"):]
    path.write_bytes(save(tensors, metadata={"nis": doc_text, "nis_checksum": io._checksum(doc_text, body)}))


def test_int8_round_trip_holds_the_quantized_weights(shape, tmp_path):
    from nis_fast.core.quantize import dequantize, quantize

    shape.save(tmp_path / "a.nis")
    shape.save(tmp_path / "q.nis", dtype="int8")
    back = nf.load(tmp_path / "q.nis")
    assert np.array_equal(back.params.numpy(), dequantize(quantize(shape.params.numpy())))
    assert back.metadata["dtype"] == "int8" and back.transform.to_dict() == shape.transform.to_dict()
    doc, tensors = _doc_and_tensors(tmp_path / "q.nis")
    assert doc["version"] == io.QUANTIZED_VERSION and doc["quantization"] == io.QUANTIZATION
    assert {k: (v.dtype.name, v.shape) for k, v in tensors.items()} == {
        "weights": ("int8", (7296,)), "weight_scales": ("float16", (257,)), "biases": ("float16", (257,))}
    assert os.path.getsize(tmp_path / "q.nis") < 0.4 * os.path.getsize(tmp_path / "a.nis")
    io.convert(tmp_path / "q.nis", tmp_path / "q.h5")  # dequantized float32 in a Keras file
    assert np.array_equal(nf.load(tmp_path / "q.h5").params.numpy(), back.params.numpy())
    assert io.describe(tmp_path / "q.nis")["dtype"] == "int8"


def test_hostile_int8_files_are_refused(shape, tmp_path):
    shape.save(tmp_path / "q.nis", dtype="int8")
    doc, tensors = _doc_and_tensors(tmp_path / "q.nis")
    cases = {
        "v1": ({**doc, "version": 1}, tensors, ["version 1"]),
        "scheme": ({**doc, "quantization": {**doc["quantization"], "bits": 4}}, tensors, ["quantization"]),
        "float doc": ({k: v for k, v in doc.items() if k != "quantization"}, tensors, ["quantization"]),
        "nan scale": (doc, {**tensors, "weight_scales": np.full(257, np.nan, np.float16)}, ["NaN"]),
        "short": (doc, {**tensors, "weights": tensors["weights"][:-1]}, ["'weights'", "shape"]),
        "wide": (doc, {**tensors, "biases": tensors["biases"].astype(np.float32)}, ["'biases'", "F16"]),
        "mixed": (doc, {**tensors, "params": np.zeros(7553, np.float32)}, ["exactly one tensor"]),
        "bits 8.0": ({**doc, "quantization": {**doc["quantization"], "bits": 8.0}}, tensors, ["quantization"]),
        "version true": ({**doc, "version": True}, tensors, ["version"]),
        "code -128": (doc, {**tensors, "weights": np.full(7296, -128, np.int8)}, ["-128"]),
        "negative scale": (doc, {**tensors, "weight_scales": -tensors["weight_scales"]}, ["positive"]),
        "huge scale": ({**doc, "transform": {**doc["transform"], "scale": 10**400}}, tensors, ["transform"]),
        "huge centre": ({**doc, "transform": {**doc["transform"], "center": [10**400, 0, 0]}}, tensors, ["transform"]),
    }
    for name, (bad_doc, bad_tensors, words) in cases.items():
        _write_nis(tmp_path / f"{name}.nis", bad_doc, bad_tensors)
        _expect_error(tmp_path / f"{name}.nis", *words)
    shape.save(tmp_path / "f.nis")
    float_doc, float_tensors = _doc_and_tensors(tmp_path / "f.nis")
    _write_nis(tmp_path / "v2.nis", {**float_doc, "version": 2}, float_tensors)  # float weights claiming int8's version
    _expect_error(tmp_path / "v2.nis", "version 2")


def test_int8_refuses_weights_it_cannot_hold(tmp_path):
    params = np.zeros(7553, np.float32)
    params[-1] = 1e6  # the output bias, beyond float16
    with pytest.raises(ValueError, match="int8"):
        io.save_nis(tmp_path / "x.nis", params, dtype="int8")
    params[-1], params[0] = 0.0, 1e7  # a weight whose unit's scale (1e7 / 127) is beyond float16
    with pytest.raises(ValueError, match="int8"):
        io.save_nis(tmp_path / "x.nis", params, dtype="int8")
    with pytest.raises(ValueError, match="dtype"):
        io.save_nis(tmp_path / "x.nis", params, dtype="int4")
    with pytest.raises(ValueError, match="float32 weights only"):
        io.check_target(tmp_path / "x.h5", "int8")
    assert not list(tmp_path.iterdir())


def test_a_lone_surrogate_in_the_document_is_one_clear_error(tmp_path):
    """A header's JSON can spell a lone UTF-16 surrogate, which UTF-8 cannot encode: still one NisFileError."""
    body = np.zeros(7553, np.float32).tobytes()
    header = ('{"params": {"dtype": "F32", "shape": [7553], "data_offsets": [0, %d]}, '
              '"__metadata__": {"nis": "\\ud800", "nis_checksum": "x"}}' % len(body)).encode()
    path = tmp_path / "surrogate.nis"
    path.write_bytes(len(header).to_bytes(8, "little") + header + body)
    assert "\\ud800" in path.read_bytes().decode("latin-1")
    _expect_error(path, "checksum")


def test_a_save_killed_half_way_leaves_the_previous_file(shape, tmp_path):
    """SIGKILL in the middle of a save (the new bytes written, not yet renamed into place): the old file stays
    whole and loads; only the temp file beside it is left (a collection run removes those at its start)."""
    target = tmp_path / "a.nis"
    shape.save(target)
    before = target.read_bytes()
    script = f"""
import os, signal, numpy as np
import nis_fast as nf
from nis_fast.core import files
files.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die between the write and the rename
nf.NeuralSDF(np.zeros(7553, np.float32)).save({str(target)!r})
"""
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert target.read_bytes() == before
    assert torch.equal(nf.load(target).params, shape.params)
    assert [p.name for p in tmp_path.iterdir() if p.name != "a.nis"][0].endswith(".tmp")
