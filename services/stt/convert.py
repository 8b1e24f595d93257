"""CTranslate2 Whisper (`model.bin`) to an openai-whisper checkpoint, offline.

No openai-whisper checkpoint can be downloaded where Soriflow is built, yet
users run openai-whisper; both engines must therefore run the same real
weights. CTranslate2 has no public API that reads every variable back, so
this module parses `model.bin` itself. The format is the one
`ctranslate2.specs.model_spec.ModelSpec._serialize` writes (binary version 6):

    u32 version, str spec name, u32 spec revision, u32 variable count,
    per variable: str name, u8 rank, u32 dims[rank], u8 dtype id, u32 byte count, bytes
    u32 alias count, per alias: str alias, str target
    (str = u16 length including a NUL terminator, UTF-8 bytes, NUL; little endian)

Quantized weights are restored to floats: int8 rows were multiplied by a
per-row `<name>_scale` (127 / max |row|, conv kernels flattened to rows) and
int16 by one scalar, so dividing by the saved scale gives the weights back
within quantization error. float16 weights stay float16 (as openai's own
checkpoints are) and are cast by `load_state_dict`.

Names map onto openai-whisper's modules; CTranslate2 fuses self-attention's
query/key/value into one matrix (key has no bias in Whisper, stored as zeros)
and cross-attention's key/value into another, so those are split again. The
word-timestamp alignment heads come from `config.json` and are stored in the
checkpoint in openai's own encoding (base85 of a gzipped bool mask).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from soriflow.errors import InvalidArgument

SUPPORTED_BINARY_VERSIONS: Final = (6,)
_DTYPES: Final = ("float32", "int8", "int16", "int32", "float16", "bfloat16")

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class CT2Model:
    """The variables of a CTranslate2 model.bin, aliases resolved."""

    spec: str
    revision: int
    variables: dict[str, Array]


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise InvalidArgument(f"{self.path} is truncated (at byte {self.pos}): re-copy the model")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        length = self.unpack("H")
        raw = self.data[self.pos : self.pos + length - 1]
        self.pos += length
        return raw.decode("utf-8")

    def array(self, dtype: str, shape: tuple[int, ...], nbytes: int) -> Array:
        if self.pos + nbytes > len(self.data):
            raise InvalidArgument(f"{self.path} is truncated (at byte {self.pos}): re-copy the model")
        if dtype == "bfloat16":
            raw = np.frombuffer(self.data, dtype=np.uint16, count=nbytes // 2, offset=self.pos)
            values: Array = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            values = np.frombuffer(
                self.data, dtype=np.dtype(dtype), count=nbytes // np.dtype(dtype).itemsize, offset=self.pos
            )
        self.pos += nbytes
        return values.reshape(shape)


def read_ct2_model(path: Path) -> CT2Model:
    """Parses a CTranslate2 `model.bin` (binary version 6) into numpy arrays."""
    data = path.read_bytes()
    reader = _Reader(data, path)
    version = reader.unpack("I")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise InvalidArgument(
            f"{path} has CTranslate2 binary version {version}; this converter reads version 6 "
            "(models converted with ctranslate2 >= 3): re-convert the model with a current ctranslate2"
        )
    spec = reader.string()
    revision = reader.unpack("I")
    variables: dict[str, Array] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        rank = reader.unpack("B")
        shape = tuple(reader.unpack("I") for _ in range(rank))
        type_id = reader.unpack("B")
        if type_id >= len(_DTYPES):
            raise InvalidArgument(f"{path}: variable {name} has unknown dtype id {type_id}")
        nbytes = reader.unpack("I")
        variables[name] = reader.array(_DTYPES[type_id], shape, nbytes)
    for _ in range(reader.unpack("I")):
        alias, target = reader.string(), reader.string()
        if target in variables:
            variables[alias] = variables[target]
    return CT2Model(spec=spec, revision=revision, variables=variables)


def dequantize(variables: dict[str, Array], name: str) -> Array:
    """A weight as floats, undoing int8/int16 quantization with its saved scale."""
    value = variables[name]
    if value.dtype in (np.float16, np.float32):
        return value
    scale = variables.get(name + "_scale")
    if scale is None:
        raise InvalidArgument(f"{name} is {value.dtype} but has no {name}_scale to dequantize it with")
    scale = scale.astype(np.float32)
    if value.dtype == np.int8:
        flat = value.reshape(value.shape[0], -1).astype(np.float32) / scale.reshape(-1, 1)
        return flat.reshape(value.shape)
    if value.dtype == np.int16:
        return value.astype(np.float32) / float(scale)
    raise InvalidArgument(f"{name} has unsupported dtype {value.dtype}")


@dataclass(frozen=True)
class Dims:
    """openai-whisper's `ModelDimensions`, inferred from the weights."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int


def _layer_count(variables: dict[str, Array], prefix: str) -> int:
    indices = {int(m.group(1)) for k in variables if (m := re.match(rf"{prefix}/layer_(\d+)/", k))}
    if not indices or indices != set(range(len(indices))):
        raise InvalidArgument(f"the model has no consecutive {prefix} layers: is it a Whisper model?")
    return len(indices)


def infer_dims(variables: dict[str, Array]) -> Dims:
    conv1 = variables["encoder/conv1/weight"]
    return Dims(
        n_mels=int(conv1.shape[1]),
        n_audio_ctx=int(variables["encoder/position_encodings/encodings"].shape[0]),
        n_audio_state=int(conv1.shape[0]),
        n_audio_head=int(variables["encoder/num_heads"]),
        n_audio_layer=_layer_count(variables, "encoder"),
        n_vocab=int(variables["decoder/embeddings/weight"].shape[0]),
        n_text_ctx=int(variables["decoder/position_encodings/encodings"].shape[0]),
        n_text_state=int(variables["decoder/embeddings/weight"].shape[1]),
        n_text_head=int(variables["decoder/num_heads"]),
        n_text_layer=_layer_count(variables, "decoder"),
    )


def to_openai_state_dict(model: CT2Model) -> tuple[Dims, dict[str, Array]]:
    """openai-whisper state-dict arrays from CTranslate2 variables."""
    if model.spec != "WhisperSpec":
        raise InvalidArgument(f"the model is a {model.spec}, not a Whisper model (WhisperSpec)")
    v = model.variables
    dims = infer_dims(v)
    out: dict[str, Array] = {}

    def w(name: str) -> Array:
        return dequantize(v, name)

    def linear(dst: str, src: str, *, bias: bool = True) -> None:
        out[f"{dst}.weight"] = w(f"{src}/weight")
        if bias:
            out[f"{dst}.bias"] = v[f"{src}/bias"]

    def norm(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = v[f"{src}/gamma"]
        out[f"{dst}.bias"] = v[f"{src}/beta"]

    def split(src: str, parts: int) -> tuple[list[Array], list[Array]]:
        weight, bias = w(f"{src}/weight"), v[f"{src}/bias"]
        return np.split(weight, parts, axis=0), np.split(bias, parts, axis=0)

    def self_attention(dst: str, src: str) -> None:
        (wq, wk, wv), (bq, bk, bv) = split(f"{src}/linear_0", 3)
        if np.any(bk != 0):
            raise InvalidArgument(f"{src}: Whisper's attention key has no bias, but this model's is non-zero")
        out.update(
            {
                f"{dst}.query.weight": wq,
                f"{dst}.query.bias": bq,
                f"{dst}.key.weight": wk,
                f"{dst}.value.weight": wv,
                f"{dst}.value.bias": bv,
            }
        )
        linear(f"{dst}.out", f"{src}/linear_1")

    def cross_attention(dst: str, src: str) -> None:
        linear(f"{dst}.query", f"{src}/linear_0")
        (wk, wv), (bk, bv) = split(f"{src}/linear_1", 2)
        if np.any(bk != 0):
            raise InvalidArgument(f"{src}: Whisper's attention key has no bias, but this model's is non-zero")
        out.update({f"{dst}.key.weight": wk, f"{dst}.value.weight": wv, f"{dst}.value.bias": bv})
        linear(f"{dst}.out", f"{src}/linear_2")

    def mlp(dst: str, src: str) -> None:
        norm(f"{dst}.mlp_ln", f"{src}/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/linear_1")

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    out["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    for i in range(dims.n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        self_attention(f"{dst}.attn", f"{src}/self_attention")
        mlp(dst, f"{src}/ffn")
    norm("encoder.ln_post", "encoder/layer_norm")

    out["decoder.token_embedding.weight"] = w("decoder/embeddings/weight")
    out["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(dims.n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        self_attention(f"{dst}.attn", f"{src}/self_attention")
        norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        cross_attention(f"{dst}.cross_attn", f"{src}/attention")
        mlp(dst, f"{src}/ffn")
    norm("decoder.ln", "decoder/layer_norm")
    return dims, out


def encode_alignment_heads(heads: list[list[int]], dims: Dims) -> str:
    """openai-whisper's encoding of alignment heads: base85(gzip(bool mask [layers, heads]))."""
    mask = np.zeros((dims.n_text_layer, dims.n_text_head), dtype=bool)
    for layer, head in heads:
        if not (0 <= layer < dims.n_text_layer and 0 <= head < dims.n_text_head):
            raise InvalidArgument(
                f"alignment head ({layer}, {head}) is outside the decoder's "
                f"{dims.n_text_layer} layers x {dims.n_text_head} heads"
            )
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes())).decode("ascii")


def convert_ct2_to_openai(src: Path, out: Path) -> dict[str, Any]:
    """Writes an openai-whisper checkpoint for the CTranslate2 model in `src`; returns a summary."""
    import torch

    model_bin = src / "model.bin" if src.is_dir() else src
    if not model_bin.is_file():
        raise InvalidArgument(f"{model_bin} does not exist: give a CTranslate2 Whisper model directory")
    model = read_ct2_model(model_bin)
    dims, arrays = to_openai_state_dict(model)
    config_path = model_bin.parent / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    state = {name: torch.from_numpy(np.array(array)) for name, array in arrays.items()}
    checkpoint: dict[str, Any] = {"dims": asdict(dims), "model_state_dict": state}
    heads = config.get("alignment_heads")
    if heads:
        checkpoint["alignment_heads"] = encode_alignment_heads(heads, dims)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    torch.save(checkpoint, partial)
    partial.replace(out)
    dtypes = sorted({str(a.dtype) for a in model.variables.values() if a.ndim >= 2})
    return {
        "source": str(model_bin),
        "output": str(out),
        "dims": asdict(dims),
        "tensors": len(state),
        "source_dtypes": dtypes,
        "alignment_heads": len(heads or []),
    }
