"""Weight files: the `.nis` format (ours) and the paper's Keras HDF5 files.

`.nis` = a safetensors file holding ONE flat tensor "params" (the 7553 values in
the layout of `nis_fast.core.layout`, float32 or float16) and, in the safetensors
header's `__metadata__`, two strings:
  "nis"          a JSON document: format name + version, architecture, the
                 normalisation transform, the training recipe, the source mesh's
                 sha256, metrics, nis_fast version;
  "nis_checksum" "sha256:<hex>" of the "nis" string's UTF-8 bytes followed by
                 the tensor's bytes, so a flipped byte anywhere is caught.
Loading validates all of it and raises one `NisFileError` naming the file and
the problem. Writes are atomic (temp file in the same folder + os.replace).
Nothing here uses pickle.

Keras `.h5`: the layout of the paper's released files (`model.save_weights`):
root attributes backend / keras_version / layer_names, one group per Dense layer
with a `weight_names` attribute and datasets `<layer>/<layer>/kernel:0`, `bias:0`.
Files written by `model.save` (weights under `model_weights/`) are read too.
The paper's files carry no normalisation: they load with the identity transform
and a note. Files we write add one root attribute "nis" (the same JSON document)
that Keras ignores, so our transform survives a round trip through .h5.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .core import __version__, layout, quantize
from .core.files import atomic_write
from .core.normalization import IDENTITY, Normalization

FORMAT_NAME = "nis_fast.neural_sdf"
FORMAT_VERSION = 1  # float32 / float16 weights: one tensor "params"
QUANTIZED_VERSION = 2  # int8 weights: the tensors of core.quantize, and the scheme in the document
SUPPORTED_VERSIONS = (1, 2)
TENSOR_NAME = "params"
DTYPES = ("float32", "float16", "int8")
_DTYPES = {"F32": np.float32, "F16": np.float16, "I8": np.int8}
# The tensors of a file, by the kind of its weights: name -> (allowed safetensors dtypes, length).
_TENSORS = {
    "float": {TENSOR_NAME: (("F32", "F16"), layout.N_PARAMS)},
    "int8": {"weights": (("I8",), quantize.N_WEIGHTS), "weight_scales": (("F16",), quantize.N_UNITS),
             "biases": (("F16",), quantize.N_UNITS)},
}
# How int8 files are quantized (core.quantize), recorded in their document and required equal on load.
QUANTIZATION = {"scheme": "int8", "bits": 8, "granularity": "per output unit", "scales": "float16",
                "biases": "float16", "layout": "weights: every layer's W row-major in layer order; scales and biases "
                                              "one per output unit in layer order"}
_MAX_HEADER = 1 << 20  # a real header is ~2 KB; anything near this is not ours
H5_NOTE = ("loaded from a Keras .h5 file without a normalisation transform: identity assumed; "
           "queries are in the paper's unit frame (normalise with load_mesh(src).transform)")


class NisFileError(ValueError):
    """A weight file that cannot be used, with the file and the reason in the message."""


def architecture() -> dict:
    """The network description stored in every file and required equal on load."""
    return {
        "layers": [list(s) for s in layout.LAYER_SIZES],
        "activation": "relu",
        "output_activation": "tanh",
        "n_params": layout.N_PARAMS,
        "layout": "keras: per layer W[fan_in, fan_out] row-major, then b",
    }


# --- .nis ---------------------------------------------------------------------------

def _document(transform: Normalization, metadata: dict, dtype: str = "float32") -> dict:
    doc = {"format": FORMAT_NAME, "version": QUANTIZED_VERSION if dtype == "int8" else FORMAT_VERSION,
           "architecture": architecture(), "transform": transform.to_dict(), "nis_fast_version": __version__}
    if dtype == "int8":
        doc["quantization"] = QUANTIZATION
    for key in ("recipe", "source", "metrics", "notes"):
        if metadata.get(key) is not None:
            doc[key] = metadata[key]
    return doc


def _checksum(doc_text: str, tensor_bytes: bytes) -> str:
    # surrogatepass: a hostile header's JSON can hold a lone surrogate, which plain UTF-8 refuses to encode.
    return "sha256:" + hashlib.sha256(doc_text.encode("utf-8", "surrogatepass") + tensor_bytes).hexdigest()


def save_nis(path, params, transform: Normalization = IDENTITY, metadata: dict | None = None, dtype="float32"):
    """Write a .nis file atomically. dtype: "float32" (exact), "float16" (half the size) or "int8"
    (about a quarter: weights quantized per output unit, core.quantize)."""
    blob = nis_bytes(params, transform, metadata, dtype)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(blob)

    atomic_write(path, write)


def nis_size_bound(dtype: str) -> int:
    """The most bytes a .nis file of this dtype without optional metadata takes (the transform's numbers at
    their longest JSON spelling): a budget at least this large holds any shape."""
    longest = Normalization(np.full(3, -1.2345678901234567e-300), 1.2345678901234567e-300)
    return len(nis_bytes(np.zeros(layout.N_PARAMS, np.float32), longest, None, dtype))


def nis_bytes(params, transform: Normalization = IDENTITY, metadata: dict | None = None, dtype="float32") -> bytes:
    """The bytes of a .nis file (what save_nis writes)."""
    from safetensors.numpy import save

    if dtype not in DTYPES:
        raise ValueError(f"save_nis: dtype must be one of {DTYPES}, got {dtype!r}")
    values = _as_numpy_params(params)
    if not np.all(np.isfinite(values)):
        raise ValueError("save_nis: parameters are not all finite (NaN or inf)")
    try:
        if dtype == "int8":
            tensors = quantize.quantize(values, bits=QUANTIZATION["bits"])
        else:
            with np.errstate(over="ignore"):  # values beyond float16's range become inf, reported just below
                tensors = {TENSOR_NAME: values.astype(dtype)}
            if not np.all(np.isfinite(tensors[TENSOR_NAME])):
                raise ValueError("beyond float16's range")
    except ValueError as exc:
        raise ValueError(f"save_nis: parameters cannot be stored as {dtype} ({exc})") from None
    doc_text = json.dumps(_document(transform, metadata or {}, dtype), sort_keys=True)
    blob = save(tensors, metadata={"nis": doc_text})
    # The checksum covers the tensor data as safetensors lays it out (it orders the tensors itself):
    # laid out once to hash it, then written with it.
    header_len = int.from_bytes(blob[:8], "little")
    return save(tensors, metadata={"nis": doc_text, "nis_checksum": _checksum(doc_text, blob[8 + header_len:])})


def read_nis(path):
    """(params float32 [7553], transform, metadata dict) from a .nis file, all validated."""
    path = os.fspath(path)
    fail = _failer(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        fail(f"cannot be read ({exc.strerror or exc})")
    if len(data) < 8:
        fail(f"not a .nis file: {len(data)} bytes, too short for a safetensors header" if data else "empty file")
    n = int.from_bytes(data[:8], "little")
    if n > min(_MAX_HEADER, len(data) - 8):
        fail(f"not a .nis file or truncated: header length {n} does not fit in {len(data)} bytes")
    header = _parse_json(data[8:8 + n], "corrupt or foreign file: the safetensors header", fail)
    if not isinstance(header, dict):
        fail("corrupt or foreign file: safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None)
    kind = next((k for k, tensors in _TENSORS.items() if set(tensors) == set(header)), None)
    if kind is None:
        fail(f"expected exactly one tensor named {TENSOR_NAME!r}, or the int8 tensors {sorted(_TENSORS['int8'])}, "
             f"found {sorted(header)}")
    body = data[8 + n:]
    spans = []
    for name, (dtypes, length) in _TENSORS[kind].items():
        info = header[name]
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or info["dtype"] not in dtypes:
            got = info.get("dtype") if isinstance(info, dict) else info
            fail(f"tensor {name!r} must be {' or '.join(dtypes)}, got {got!r}")
        if info.get("shape") != [length]:
            fail(f"tensor {name!r} has shape {info.get('shape')}, expected [{length}]")
        offsets, nbytes = info.get("data_offsets"), length * np.dtype(_DTYPES[info["dtype"]]).itemsize
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] and offsets[1] - offsets[0] == nbytes):
            fail(f"tensor {name!r} has data offsets {offsets}, expected a span of {nbytes} bytes")
        spans.append((offsets[0], offsets[1], name, _DTYPES[info["dtype"]]))
    spans.sort(key=lambda span: span[0])
    if [start for start, *_ in spans] != [0] + [stop for _, stop, *_ in spans[:-1]]:
        fail(f"tensor data offsets {[span[:2] for span in spans]} overlap or leave gaps")
    if len(body) != spans[-1][1]:
        fail(f"truncated or padded: tensor data is {len(body)} bytes, expected {spans[-1][1]}")
    if not isinstance(meta, dict) or not isinstance(meta.get("nis"), str):
        fail("no nis_fast metadata (the safetensors header lacks __metadata__['nis']): not a .nis file")
    if meta.get("nis_checksum") != _checksum(meta["nis"], body):
        fail("checksum mismatch: the file was modified or damaged after it was written")
    doc = _parse_json(meta["nis"], "the nis metadata", fail)
    transform = _check_document(doc, fail)
    arrays = {name: np.frombuffer(body[start:stop], dtype=dtype) for start, stop, name, dtype in spans}
    if kind == "int8":
        # Compared as JSON text: 8.0 is not the scheme's 8, nor true its 1.
        if doc.get("version") != QUANTIZED_VERSION or json.dumps(doc.get("quantization"), sort_keys=True) != \
                json.dumps(QUANTIZATION, sort_keys=True):
            fail(f"int8 tensors with a document of version {doc.get('version')!r} and quantization "
                 f"{doc.get('quantization')!r}; expected version {QUANTIZED_VERSION} and {QUANTIZATION!r}")
        if not all(np.all(np.isfinite(arrays[k])) for k in ("weight_scales", "biases")):
            fail("scales or biases contain NaN or infinite values")
        if not np.all(arrays["weight_scales"] > 0):
            fail("weight scales must be positive")
        if np.any(arrays["weights"] == -128):  # the scheme is symmetric: codes in [-127, 127]
            fail("a weight code is -128, outside the scheme's [-127, 127]")
        params, dtype = quantize.dequantize(arrays), "int8"
    else:
        if doc.get("version") != FORMAT_VERSION or "quantization" in doc:
            fail(f"float weights with a document of version {doc.get('version')!r} (expected {FORMAT_VERSION}, "
                 "no quantization)")
        params, dtype = arrays[TENSOR_NAME].astype(np.float32), arrays[TENSOR_NAME].dtype.name
    if not np.all(np.isfinite(params)):
        fail("parameters contain NaN or infinite values")
    metadata = _metadata_of(doc, fail)
    metadata["dtype"] = dtype
    return params, transform, metadata


def _check_document(doc, fail) -> Normalization:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        fail(f"format is {doc.get('format') if isinstance(doc, dict) else doc!r}, expected {FORMAT_NAME!r}")
    if type(doc.get("version")) is not int or doc.get("version") not in SUPPORTED_VERSIONS:
        fail(f"format version {doc.get('version')!r} is not supported (this nis_fast {__version__} reads "
             f"versions {list(SUPPORTED_VERSIONS)})")
    if doc.get("architecture") != architecture():
        fail(f"architecture {doc.get('architecture')!r} differs from this engine's {architecture()!r}")
    try:
        return Normalization.from_dict(doc.get("transform"))
    except (TypeError, KeyError, ValueError, OverflowError) as exc:
        fail(f"invalid normalisation transform ({exc})")


def _parse_json(text, what, fail):
    """json.loads that turns every way hostile text can fail (bad UTF-8, bad JSON, nesting deep
    enough to exhaust the recursion limit) into one clear error."""
    try:
        return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        fail(f"{what} is not valid JSON ({type(exc).__name__}: {str(exc)[:200]})")


# Optional metadata a file may carry, with the type each must have.
_METADATA_TYPES = {"recipe": dict, "source": dict, "metrics": dict, "notes": list}


def _metadata_of(doc, fail) -> dict:
    """The optional part of a validated document: only known keys, each of the right type."""
    metadata = {}
    for key, value in doc.items():
        if key in ("format", "version", "architecture", "transform", "nis_fast_version", "quantization"):
            continue
        if key not in _METADATA_TYPES:
            fail(f"unknown metadata key {key!r}")
        if not isinstance(value, _METADATA_TYPES[key]):
            fail(f"metadata {key!r} must be a {_METADATA_TYPES[key].__name__}, got {type(value).__name__}")
        metadata[key] = value
    if "nis_fast_version" in doc:
        metadata["nis_fast_version"] = doc["nis_fast_version"]
    return metadata


def _failer(path):
    def fail(problem):
        raise NisFileError(f"{path}: {problem}")

    return fail


def _as_numpy_params(params) -> np.ndarray:
    if hasattr(params, "detach"):
        params = params.detach().cpu().numpy()
    params = np.asarray(params)
    if params.shape != (layout.N_PARAMS,):
        raise ValueError(f"expected a flat parameter vector of {layout.N_PARAMS} values, got shape {params.shape}")
    return params.astype(np.float32)


# --- Keras .h5 ----------------------------------------------------------------------

_LAYER_NAMES = ["dense"] + [f"dense_{i}" for i in range(1, len(layout.LAYER_SIZES))]


def save_h5(path, params, transform: Normalization = IDENTITY, metadata: dict | None = None):
    """Write the layout of the paper's released Keras weight files, atomically."""
    import h5py

    layers = layout.unflatten(_as_numpy_params(params))
    doc_text = json.dumps(_document(transform, metadata or {}), sort_keys=True)

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["backend"] = "tensorflow"
            f.attrs["keras_version"] = "2.2.4-tf"
            f.attrs["layer_names"] = np.array([n.encode() for n in _LAYER_NAMES])
            f.attrs["nis"] = doc_text
            for name, (w, b) in zip(_LAYER_NAMES, layers):
                g = f.create_group(name)
                g.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()])
                inner = g.create_group(name)
                inner.create_dataset("kernel:0", data=w)
                inner.create_dataset("bias:0", data=b)

    atomic_write(path, write)


def read_h5(path):
    """(params float32 [7553], transform, metadata) from a Keras weights file, validated."""
    import h5py

    path = os.fspath(path)
    fail = _failer(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as exc:
        fail(f"not a readable HDF5 file ({exc})")
    with f:
        try:
            params, transform, metadata = _h5_contents(f, fail)
        except NisFileError:
            raise
        # A damaged file can make h5py raise from any read (a bad B-tree, heap or attribute): all are the file's fault.
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
            fail(f"damaged HDF5 structure ({type(exc).__name__}: {exc})")
    metadata["dtype"] = "float32"
    return params, transform, metadata


def _h5_contents(f, fail):
    """(params, transform, metadata) of an open Keras weights file; fail(problem) on what is wrong."""
    root = f["model_weights"] if "model_weights" in f else f
    names = [_text(n) for n in root.attrs.get("layer_names", [])]
    if len(names) != len(layout.LAYER_SIZES):
        fail(f"expected {len(layout.LAYER_SIZES)} Dense layers (the paper's 3-32x8-1 network), "
             f"found layer_names {names}")
    layers = []
    for name, (fan_in, fan_out) in zip(names, layout.LAYER_SIZES):
        try:
            weight_names = [_text(w) for w in root[name].attrs["weight_names"]]
            arrays = {w.rsplit("/", 1)[-1]: np.asarray(root[name][w]) for w in weight_names}
        except (KeyError, OSError, ValueError) as exc:
            fail(f"layer {name!r} is missing or unreadable ({exc})")
        w, b = arrays.get("kernel:0"), arrays.get("bias:0")
        if w is not None and b is not None and not (np.issubdtype(w.dtype, np.floating)
                                                    and np.issubdtype(b.dtype, np.floating)):
            fail(f"layer {name!r} holds {w.dtype}/{b.dtype} arrays, expected real floating-point weights")
        if w is None or b is None or w.shape != (fan_in, fan_out) or b.shape != (fan_out,):
            fail(f"layer {name!r} holds {({k: v.shape for k, v in arrays.items()})}, expected kernel:0 "
                 f"{(fan_in, fan_out)} and bias:0 {(fan_out,)}")
        layers.append((w, b))
    _check_keras_config(f, fail)
    params = layout.flatten(layers).astype(np.float32)
    if not np.all(np.isfinite(params)):
        fail("parameters contain NaN or infinite values")
    if "nis" in f.attrs:
        doc = _parse_json(_text(f.attrs["nis"]), "the 'nis' attribute", fail)
        transform = _check_document(doc, fail)
        metadata = _metadata_of(doc, fail)
    else:
        transform, metadata = IDENTITY, {"notes": [H5_NOTE]}
    return params, transform, metadata


def _check_keras_config(f, fail):
    """Files saved with model.save carry model_config: the activations must be ours."""
    if "model_config" not in f.attrs:
        return
    config = _parse_json(_text(f.attrs["model_config"]), "the Keras model_config attribute", fail)
    try:
        layers = [l for l in config.get("config", {}).get("layers", []) if l.get("class_name") == "Dense"]
        acts = [l["config"].get("activation") for l in layers]
    except (AttributeError, KeyError, TypeError):
        fail("the Keras model_config attribute does not describe a Keras model")
    expected = ["relu"] * (len(layout.LAYER_SIZES) - 1) + ["tanh"]
    if acts != expected:
        fail(f"Keras model activations {acts} differ from the paper's {expected}")


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


# --- entry points -------------------------------------------------------------------

def read(path):
    """(params, transform, metadata) from .nis or .h5, chosen by extension."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext == ".nis":
        return read_nis(path)
    if ext in (".h5", ".hdf5"):
        return read_h5(path)
    raise NisFileError(f"{os.fspath(path)}: unknown extension {ext!r} (expected .nis or .h5)")


def check_target(path, dtype="float32") -> str:
    """The format ('nis' or 'h5') that save() will write to `path`, or a ValueError saying why it cannot:
    callers check before a long fit, so the weights are never lost to a bad file name."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext == ".nis":
        if dtype not in DTYPES:
            raise ValueError(f"{os.fspath(path)}: .nis files hold {', '.join(DTYPES)} weights, not {dtype}")
        return "nis"
    if ext in (".h5", ".hdf5"):
        if dtype != "float32":
            raise ValueError(f"{os.fspath(path)}: Keras .h5 files hold float32 weights only")
        return "h5"
    raise ValueError(f"{os.fspath(path)}: unknown extension (expected .nis or .h5)")


def save(path, params, transform, metadata, dtype="float32"):
    if check_target(path, dtype) == "nis":
        return save_nis(path, params, transform, metadata, dtype)
    return save_h5(path, params, transform, metadata)


def convert(src, dst, dtype="float32"):
    """Convert between .nis and .h5 (either direction, or re-save with another dtype)."""
    save(dst, *read(src), dtype=dtype)


def describe(path) -> dict:
    """What `nis-fast info` prints about a weight file (validated on the way)."""
    params, transform, metadata = read(path)
    return {
        "file": os.fspath(path),
        "bytes": os.path.getsize(path),
        "format": "nis" if os.fspath(path).lower().endswith(".nis") else "keras-h5",
        "architecture": architecture(),
        "dtype": metadata.get("dtype"),
        "transform": transform.to_dict(),
        "param_abs_max": float(np.abs(params).max()),
        **{k: v for k, v in metadata.items() if k != "dtype"},
    }
