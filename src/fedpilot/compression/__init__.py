"""Update compression: codecs (``fp16``, ``int8``, ``topk``) and the ``compression``
update transform that puts one on the wire (the spec's ``compression:`` section)."""

from __future__ import annotations

from fedpilot.compression.codecs import (
    CODECS,
    Codec,
    Half,
    Int8,
    TopK,
    decode_weights,
    encode_weights,
)
from fedpilot.compression.transform import RESIDUAL, Compression
from fedpilot.spec import FederationSpec
from fedpilot.spec.transforms import TransformSpec


def compression_transforms(spec: FederationSpec) -> list[TransformSpec]:
    """The chain's compression entry for ``spec`` (none while ``compression`` is off)."""
    section = spec.compression
    if not section.enabled:
        return []
    params: dict[str, object] = {
        "codec": section.codec,
        "error_feedback": section.feedback,
        "download": section.download,
    }
    if spec.base_dir is not None:  # where a user's codec is imported from
        params["base_dir"] = str(spec.base_dir)
    if section.codec == "topk":
        params["fraction"] = section.kept_fraction
    return [TransformSpec(name="compression", params=params)]


__all__ = [
    "CODECS",
    "RESIDUAL",
    "Codec",
    "Compression",
    "Half",
    "Int8",
    "TopK",
    "compression_transforms",
    "decode_weights",
    "encode_weights",
]
