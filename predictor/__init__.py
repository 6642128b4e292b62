"""The quality predictor: a LoRA-tuned MiniLM that estimates P(model answers prompt well) for every model.

`load_predictor` and `QualityPredictor` are imported lazily, so light users of the package
(data loading, metrics) do not pay for importing torch and transformers.
"""
from __future__ import annotations

__all__ = ["QualityPredictor", "load_predictor"]

PRECISIONS = ("fp32", "bf16", "int8", "onnx-int8", "auto")  # how `load_predictor` can run the encoder
CPU_ONLY_PRECISIONS = ("int8", "onnx-int8")  # quantised encoders: no CUDA kernels for them


def __getattr__(name: str):
    if name in __all__:
        from pickwise.predictor import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'predictor' has no attribute {name!r}")
