"""The prompt encoder under ONNX Runtime with int8 weights: the fastest way found to run it on a CPU.

Why: on a 2-core server the encoder is nearly all of a select's time, and a lone request is
encoded at batch 1, where torch's own shortcuts help least; ONNX Runtime's int8 kernels are the
fastest there at a negligible accuracy cost (docs/performance.md, docs/decisions/precision.md).

The graph covers token ids -> prompt vector u (plus, with tasks, the task posterior and the pooled
embedding that the one-scale layer in `predictor.scale` reads): MiniLM with LoRA merged, mean
pooling and the prompt head, so inference never calls into torch (torch's OpenMP threads and ORT's
spinning workers would fight over the same cores). Only the backbone's matmuls are quantised; the
prompt head stays fp32, since it turns the pooled embedding into task posteriors and quantising
those moves prompts between tasks. Exporting and quantising happen once per set of weights; the
result is cached
on disk (`onnx_cache_dir`), keyed by a hash of the weights and the library versions, so a
service restart loads it in well under a second.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("pickwise.predictor")
CACHE_ENV = "PICKWISE_ONNX_CACHE"  # where exported encoders are kept (default: <repo>/.cache/onnx)
GRAPH_FILE = "prompt_encoder_int8.onnx"
FORMAT = "prompt-encoder-int8-v3"  # bump when the export or quantisation recipe changes
CACHE_KEEP = 4  # exported encoders kept on disk, the most recently used (each is ~60 MB for six layers)


def onnx_cache_dir() -> Path:
    """$PICKWISE_ONNX_CACHE, else `<repo>/.cache/onnx` (gitignored), beside the embedding cache."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[1] / ".cache" / "onnx"


class _PromptEncoder(torch.nn.Module):
    """ids, mask -> prompt vectors u (and, with tasks, the task posterior and pooled embedding the
    one-scale layer reads):
    the part of QualityModel that ONNX runs (all but the model vectors)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor):
        pooled = self.model.top(self.model.stem(input_ids, mask), mask)
        u, logits = self.model.prompt_outputs(pooled)
        return u if logits is None else (u, torch.softmax(logits[0], dim=-1), pooled)


def _prompt_head(model) -> dict[str, torch.Tensor]:
    """The prompt head's parameters (TaskMixture or PromptHead), by their names in QualityModel."""
    return {name: p for name, p in model.named_parameters() if name.startswith(("tasks.", "head."))}


def head_initializers(model) -> set[str]:
    """Names the prompt head's weights get in the exported graph (torch.onnx keeps parameter names)."""
    return {f"model.{name}" for name in _prompt_head(model)}


def weights_key(model) -> str:
    """Hash of the weights the graph is made of and of every library it depends on."""
    import onnxruntime

    digest = hashlib.sha256(f"{FORMAT} torch={torch.__version__} ort={onnxruntime.__version__}".encode())
    for name, tensor in {**model.bert.state_dict(), **_prompt_head(model)}.items():
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:24]


def export_prompt_encoder(model, path: Path) -> None:
    """Write the fp32 ONNX graph of `_PromptEncoder(model)` with dynamic batch and sequence length."""
    sample_ids = torch.ones((2, 16), dtype=torch.long)
    sample_mask = torch.ones((2, 16), dtype=torch.long)
    batch = torch.export.Dim("batch")
    length = torch.export.Dim("length", min=2, max=model.bert.config.max_position_embeddings)
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr), _quiet_loggers("torch"), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals, not ours to act on
        torch.onnx.export(
            _PromptEncoder(model).eval(), (sample_ids, sample_mask), str(path), dynamo=True,
            input_names=["input_ids", "mask"], output_names=["u", "tasks", "pooled"] if model.config.uses_tasks else ["u"],
            dynamic_shapes={"input_ids": {0: batch, 1: length}, "mask": {0: batch, 1: length}},
            external_data=False, verbose=False,
        )


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """Raise these loggers to ERROR for a while: the exporter and quantiser log advice about their
    own internals (a missing torchvision, a pre-processing pass for static quantisation) at WARNING."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def quantize_int8(source: Path, target: Path, keep_float: set[str]) -> None:
    """Dynamic int8 quantisation of the matmul weights (per output channel), except in the nodes that
    read an initializer named in `keep_float`; activations stay float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source)).graph
    # an allow-list, not `nodes_to_exclude`: the quantiser first rewrites the head's Gemms as MatMuls
    # under new names, which an exclusion list never matches
    chosen = [node.name for node in graph.node if node.op_type == "MatMul" and not keep_float & set(node.input)]
    with _quiet_loggers(""):  # the quantiser logs through the root logger
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_quantize=chosen, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def build_graph(model, directory: Path) -> Path:
    """Export and quantise into `directory` (created), and return the int8 graph's path."""
    directory.mkdir(parents=True, exist_ok=True)
    fp32 = directory / "prompt_encoder_fp32.onnx"
    export_prompt_encoder(model, fp32)
    quantize_int8(fp32, directory / GRAPH_FILE, keep_float=head_initializers(model))
    fp32.unlink()
    return directory / GRAPH_FILE


class OnnxPromptEncoder:
    """(input_ids, mask) -> prompt vectors u [batch, dim] as float32, by ONNX Runtime.

    It holds the graph twice: on `threads` threads, for the lowest latency of one batch, and on
    one thread (`single_thread=True`), which several callers may run at once: one-thread runs cost
    less CPU per prompt than a multi-thread run, whose threads wait for each other whenever the event
    loop takes a core (docs/decisions/encoder-lanes.md).
    """

    def __init__(self, graph: Path | bytes, threads: int):
        self.threads = threads
        self.session = _session(graph, threads)
        self.single = self.session if threads == 1 else _session(graph, 1)

    def __call__(self, input_ids: torch.Tensor, mask: torch.Tensor, single_thread: bool = False) -> np.ndarray:
        return self.features(input_ids, mask, single_thread)[0]

    def features(self, input_ids: torch.Tensor, mask: torch.Tensor,
                 single_thread: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(u, task posterior, pooled embedding) from one run; None, None for a graph without tasks."""
        feeds = {"input_ids": input_ids.numpy().astype(np.int64), "mask": mask.numpy().astype(np.int64)}
        out = (self.single if single_thread else self.session).run(None, feeds)
        return (out[0], out[1], out[2]) if len(out) > 2 else (out[0], None, None)


def _session(graph: Path | bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), options,
                                providers=["CPUExecutionProvider"])


def prune_cache(root: Path, keep: int = CACHE_KEEP) -> list[Path]:
    """Remove all but the `keep` most recently used exported encoders under `root`; returns the removed.

    Every retrained or compared artifact adds one, so without this the cache only grows. Only
    finished entries (a directory holding a graph) are candidates: exports still being staged by
    another process (".export-*") are left alone.
    """
    entries = [p for p in root.iterdir()
               if p.is_dir() and not p.name.startswith(".") and (p / GRAPH_FILE).is_file()]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[keep:]:
        shutil.rmtree(stale, ignore_errors=True)
    return entries[keep:]


def int8_prompt_encoder(model, threads: int, cache_dir: Path | None = None) -> OnnxPromptEncoder:
    """The int8 ONNX encoder for `model`'s weights: from the cache, else exported now and cached.

    A cache that cannot be written (read-only install) only costs the export at every load, and
    one that cannot be read (a damaged file, or one another process pruned meanwhile) is rebuilt.
    """
    root = cache_dir or onnx_cache_dir()
    cache = root / weights_key(model)
    graph = cache / GRAPH_FILE
    if graph.is_file():
        with contextlib.suppress(OSError):  # its time of last use, for prune_cache
            os.utime(cache)
        try:
            return OnnxPromptEncoder(graph, threads)
        except Exception as exc:  # ONNX Runtime's load errors have no common base worth naming
            log.warning("cached ONNX encoder %s cannot be loaded (%s: %s); exporting it again",
                        graph, type(exc).__name__, exc)
            shutil.rmtree(cache, ignore_errors=True)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=cache.parent))
    except OSError:
        staging = Path(tempfile.mkdtemp(prefix="pickwise-onnx-"))
    staging.chmod(0o755)  # readable by a service account, as mkdtemp's 0700 would not be
    try:
        try:
            built = build_graph(model, staging)
        except Exception as exc:  # the exporter's failures are many and deep; say what to do instead
            raise RuntimeError(f"could not build the int8 ONNX encoder ({type(exc).__name__}: {exc}); "
                               "use precision bf16 or fp32 instead") from exc
        encoder = OnnxPromptEncoder(built.read_bytes(), threads)
        with contextlib.suppress(OSError):  # another process may have cached it first: theirs is as good
            staging.rename(cache)
            prune_cache(root)
        return encoder
    finally:
        shutil.rmtree(staging, ignore_errors=True)
