"""Which artifact serves: a pointer under $PICKWISE_HOME that `pickwise artifact promote` moves
forward only when a refitted candidate is not worse than its base on held-out outcomes.

    $PICKWISE_HOME/artifact.json        {"current": entry, "history": [older entries, newest last]}
    $PICKWISE_HOME/artifacts/<version>/ a copy of every promoted artifact (a later `fit --out` that
                                        reuses the candidate's directory cannot change what serves)
    $PICKWISE_HOME/promotions.jsonl     one line per promotion or rollback, with its figures

`serve` and every CLI command without `--artifact` load the current entry when there is one, else
the shipped artifact; a running `serve` follows the pointer (api/http/promotions.py).
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from pickwise.errors import PickwiseError
from pickwise.files import atomic_file
from pickwise.predictor.artifact import ArtifactError, artifact_version, default_artifact_dir, read_meta
from pickwise.registry import pickwise_home

POINTER_FILE = "artifact.json"
LOG_FILE = "promotions.jsonl"
COPIES_DIR = "artifacts"


class PromotionRefused(PickwiseError):
    """The candidate is worse than its base on held-out outcomes, or has no figures to judge it by."""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_pointer(home: Path | None = None) -> dict:
    path = (home or pickwise_home()) / POINTER_FILE
    if not path.exists():
        return {"current": None, "history": []}
    return json.loads(path.read_text())


def promoted_artifact_dir(home: Path | None = None) -> Path | None:
    """The promoted artifact, or None when nothing was promoted (or the pointer was rolled back past
    the first promotion)."""
    current = read_pointer(home).get("current")
    return Path(current["path"]) if current else None


def serving_artifact_dir(home: Path | None = None) -> Path:
    """What serves by default: the promoted artifact if there is one, else the shipped one."""
    return promoted_artifact_dir(home) or default_artifact_dir()


def judge(meta: dict) -> tuple[list[str], dict]:
    """(why the candidate is worse, the figures judged): an empty list means promotable."""
    holdout = (meta.get("refit") or {}).get("holdout") or {}
    brier = holdout.get("brier")
    if not brier:
        return ["it has no held-out figures (not a `pickwise fit` artifact, or fitted with --holdout 0)"], holdout
    worse = []
    if brier["candidate"] > brier["base"]:
        worse.append(f"Brier {brier['candidate']:.5f} > base {brier['base']:.5f} on {holdout['rows']} held-out outcomes")
    capture = holdout.get("capture")
    if capture and capture["candidate"] < capture["base"]:
        worse.append(f"headroom capture {capture['candidate']:.4f} < base {capture['base']:.4f} on "
                     f"{capture['prompts']} held-out prompts")
    return worse, holdout


def _write_pointer(home: Path, pointer: dict) -> None:
    home.mkdir(parents=True, exist_ok=True)
    with atomic_file(home / POINTER_FILE, "w") as fh:
        json.dump(pointer, fh, indent=2)


def _log(home: Path, entry: dict) -> None:
    with open(home / LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


def promote(directory: str | Path, *, force: bool = False, home: Path | None = None) -> dict:
    """Make `directory` the serving artifact if it is not worse than its base (or `force`); the
    previous one is kept in the history for `rollback`. Returns the log entry."""
    home = home or pickwise_home()
    directory = Path(directory)
    meta = read_meta(directory)  # ArtifactError when it is not an artifact
    worse, figures = judge(meta)
    if worse and not force:
        raise PromotionRefused(f"{directory} is not promoted: " + "; ".join(worse) + " (--force promotes it anyway)")
    version = artifact_version(directory)
    copy = home / COPIES_DIR / version
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_name(f".{version}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(directory, tmp)
        tmp.rename(copy)
    pointer = read_pointer(home)
    entry = {"path": str(copy), "version": version, "source": str(directory.resolve()), "promoted_at": _now()}
    history = pointer["history"] + ([pointer["current"]] if pointer.get("current") else [])
    _write_pointer(home, {"current": entry, "history": history})
    record = {"action": "promote", **entry, "forced": bool(force and worse), "worse": worse, "figures": figures,
              "previous": pointer.get("current")}
    _log(home, record)
    return record


def rollback(*, home: Path | None = None) -> dict:
    """Serve the artifact promoted before the current one (the shipped one after the first);
    returns the log entry."""
    home = home or pickwise_home()
    pointer = read_pointer(home)
    if not pointer.get("current"):
        raise PromotionRefused("nothing to roll back: no artifact was promoted (the shipped one serves)")
    history = list(pointer["history"])
    previous = history.pop() if history else None
    if previous is not None and not Path(previous["path"]).is_dir():
        raise ArtifactError(f"cannot roll back to {previous['path']}: it no longer exists")
    _write_pointer(home, {"current": previous, "history": history})
    record = {"action": "rollback", "at": _now(), "from": pointer["current"],
              "to": previous or {"path": str(default_artifact_dir()), "version": "shipped"}}
    _log(home, record)
    return record
