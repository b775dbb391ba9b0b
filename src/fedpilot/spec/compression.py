"""The ``compression`` section: how updates (and, where safe, the model) are encoded on
the wire. Off by default (``codec: none``).

The codec names are listed here, not imported from ``fedpilot.compression``, so the spec
package never imports the code it configures.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from fedpilot.spec.sections import Section, is_object_ref

BUILTIN_CODECS: tuple[str, ...] = ("fp16", "int8", "topk")
"""Codec names ``compression.codec`` accepts besides ``none`` and ``package.module:Class``."""

SAFE_DOWNLOAD: tuple[str, ...] = ("fp16",)
"""Codecs the model may travel to the learners in: deterministic and unbiased enough that
every learner starts from (nearly) the same model. int8's stochastic rounding and top-k's
dropped coordinates would give each learner a different, damaged model with no error
feedback to repair it."""


class CompressionSpec(Section):
    """Each learner encodes its update's delta (trained − received model) with ``codec``;
    the server decodes it before validation and aggregation, so everything downstream
    sees an ordinary update.

    ``fp16``: half precision (relative error ≤ 2⁻¹¹). ``int8``: per-tensor scale and zero
    point, stochastic rounding (unbiased, error ≤ one step). ``topk``: the ``fraction``
    largest-magnitude coordinates of each tensor, with error feedback (the rest is kept
    in the learner's state and added to its next update).
    """

    codec: str = Field(
        default="none",
        description="none | fp16 | int8 | topk, or `package.module:Class` naming a "
        "fedpilot.compression.Codec subclass.",
    )
    fraction: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="topk: share of each tensor's coordinates sent (at least one); None: 0.01.",
    )
    error_feedback: bool | None = Field(
        default=None,
        description="Keep what the codec lost in the learner's state and add it to its "
        "next update; None: on for topk, off otherwise.",
    )
    download: bool = Field(
        default=False,
        description="Send the model to the learners encoded too (fp16 only).",
    )

    @field_validator("codec")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        if value != "none" and value not in BUILTIN_CODECS and not is_object_ref(value):
            raise ValueError(
                f"`compression.codec` must be none, {', '.join(BUILTIN_CODECS)} or "
                f"`package.module:Class`, got codec={value!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CompressionSpec:
        if self.download and self.codec not in SAFE_DOWNLOAD:
            raise ValueError(
                f"`compression.download` needs a codec safe for the model "
                f"({', '.join(SAFE_DOWNLOAD)}), got download=true with codec={self.codec!r}"
            )
        if self.error_feedback and self.codec == "none":
            raise ValueError(
                "`compression.error_feedback` needs a codec, got error_feedback=true "
                "with codec='none'"
            )
        if self.fraction is not None and self.codec != "topk":
            raise ValueError(
                f"`compression.fraction` is for codec topk, got fraction={self.fraction} "
                f"with codec={self.codec!r}"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.codec != "none"

    @property
    def kept_fraction(self) -> float:
        """topk's share of coordinates sent."""
        return 0.01 if self.fraction is None else self.fraction

    @property
    def feedback(self) -> bool:
        """Whether error feedback is on (its default depends on the codec)."""
        return self.codec == "topk" if self.error_feedback is None else self.error_feedback


__all__ = ["BUILTIN_CODECS", "SAFE_DOWNLOAD", "CompressionSpec"]
