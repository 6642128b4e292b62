"""Which artifact serves: a pointer under $PICKWISE_HOME that `pickwise artifact promote` moves
forward only when held-out outcomes do not show a refitted candidate worse than its base.

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
from typing import NamedTuple

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
    """The pointer ({"current": entry or None, "history": [entries]}); nothing promoted when it is absent.

    A pointer that cannot be read or is not that shape (a hand edit, a full disk) is an ArtifactError
    naming the file: every command without --artifact reads it, and raised a traceback."""
    path = (home or pickwise_home()) / POINTER_FILE
    if not path.exists():
        return {"current": None, "history": []}
    try:
        pointer = json.loads(path.read_text(encoding="utf-8"))
        why = _pointer_problem(pointer)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
    if why:
        raise ArtifactError(f"the promotion pointer {path} cannot be read ({why}); mend it, or delete it to serve "
                            "the shipped artifact (the promoted ones stay in its artifacts/ folder)")
    return pointer


def _pointer_problem(pointer) -> str | None:
    """What makes a parsed pointer unusable, or None."""
    def entry_problem(entry, where: str) -> str | None:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) \
                or not isinstance(entry.get("version"), str):
            return f"{where} is not an entry with a 'path' and a 'version'"
        return None

    if not isinstance(pointer, dict) or "current" not in pointer or not isinstance(pointer.get("history"), list):
        return "expected an object with 'current' and a 'history' list"
    if pointer["current"] is not None and (why := entry_problem(pointer["current"], "'current'")):
        return why
    return next((why for i, e in enumerate(pointer["history"]) if (why := entry_problem(e, f"history[{i}]"))), None)


def promoted_artifact_dir(home: Path | None = None) -> Path | None:
    """The promoted artifact, or None when nothing was promoted (or the pointer was rolled back past
    the first promotion)."""
    home = home or pickwise_home()
    current = read_pointer(home).get("current")
    if current and not Path(current["path"]).is_dir():  # said "no such predictor artifact directory" of a path
        # the user never typed: name where it comes from and the way back
        raise ArtifactError(f"the promoted artifact {current['path']} (named by {home / POINTER_FILE}) no longer "
                            "exists; `pickwise artifact rollback` serves the one promoted before it")
    return Path(current["path"]) if current else None


def serving_artifact_dir(home: Path | None = None) -> Path:
    """What serves by default: the promoted artifact if there is one, else the shipped one."""
    return promoted_artifact_dir(home) or default_artifact_dir()


class Judgement(NamedTuple):
    worse: list[str]  # why the candidate is refused; empty: promotable
    verdicts: dict[str, str]  # per figure: "better", "worse", "not distinguishable" (or "not worse": no interval)
    figures: dict  # the held-out figures judged


def verdict(figure: dict, lower_is_better: bool) -> str:
    """Where candidate − base lies: "worse" or "better" when its whole 95% paired bootstrap interval
    is on that side of zero, else "not distinguishable". A figure fitted before intervals were
    stored is judged on its point estimate: "worse" or "not worse"."""
    point = figure["candidate"] - figure["base"]
    difference = figure.get("difference") or {}
    if not difference.get("n"):
        return "worse" if (point > 0 if lower_is_better else point < 0) else "not worse"
    gain_lo, gain_hi = (-difference["hi"], -difference["lo"]) if lower_is_better else \
        (difference["lo"], difference["hi"])
    return "worse" if gain_hi < 0 else "better" if gain_lo > 0 else "not distinguishable"


def _interval_text(figure: dict, digits: int) -> str:
    d = figure.get("difference") or {}
    if not d.get("n"):
        return "point estimates only (no bootstrap interval stored)"
    return f"candidate − base {d['point']:+.{digits}f}, 95% interval [{d['lo']:+.{digits}f}, {d['hi']:+.{digits}f}]"


def judge(meta: dict) -> Judgement:
    """The gate: refuse a candidate that the held-out outcomes show to be worse than its base.

    Worse means the whole paired bootstrap interval of candidate − base is on the worse side, for
    Brier, for headroom capture or for the answer lengths select prices with (mean |log2 error|); a
    difference within the noise ("not distinguishable") does not refuse it (docs/outcomes.md says why)."""
    refit = meta.get("refit") or {}
    holdout = refit.get("holdout") or {}
    brier = holdout.get("brier")
    if not brier:
        if not refit:
            why = "not a `pickwise fit` artifact"
        elif not refit.get("holdout_share"):
            why = "fitted with --holdout 0"
        else:  # a share of too few prompts rounds to none; outcomes kept as a hash cannot be held out
            why = (f"no outcome was held out: {refit['holdout_share']:g} of the prompts whose text the store "
                   "keeps rounds to none, or to all of them")
        return Judgement([f"it has no held-out figures ({why})"], {}, holdout)
    verdicts = {"brier": verdict(brier, lower_is_better=True)}
    capture = holdout.get("capture")
    if capture:
        verdicts["capture"] = verdict(capture, lower_is_better=False)
    lengths = (holdout.get("lengths") or {}).get("mean_abs_log2_error")
    if lengths:
        verdicts["lengths"] = verdict(lengths, lower_is_better=True)
    worse = []
    if verdicts["brier"] == "worse":
        worse.append(f"Brier {brier['candidate']:.5f} > base {brier['base']:.5f} on {holdout['rows']} held-out "
                     f"outcomes ({_interval_text(brier, 5)})")
    if verdicts.get("capture") == "worse":
        worse.append(f"headroom capture {capture['candidate']:.4f} < base {capture['base']:.4f} on "
                     f"{capture['prompts']} held-out prompts ({_interval_text(capture, 4)})")
    if verdicts.get("lengths") == "worse":
        worse.append(f"answer lengths: mean |log2 error| {lengths['candidate']:.3f} > base {lengths['base']:.3f} on "
                     f"{holdout['lengths']['rows']} held-out outcomes ({_interval_text(lengths, 3)})")
    return Judgement(worse, verdicts, holdout)


def _write_pointer(home: Path, pointer: dict) -> None:
    home.mkdir(parents=True, exist_ok=True)
    with atomic_file(home / POINTER_FILE, "w") as fh:
        json.dump(pointer, fh, indent=2)


def _log(home: Path, entry: dict) -> None:
    with open(home / LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


def _shipped() -> dict:
    """The shipped artifact as a pointer entry: what serves when nothing promoted does."""
    return {"path": str(default_artifact_dir()), "version": artifact_version(default_artifact_dir()), "shipped": True}


def promote(directory: str | Path, *, force: bool = False, home: Path | None = None) -> dict:
    """Make `directory` the serving artifact if it is not worse than its base (or `force`); the
    previous one is kept in the history for `rollback`. Returns the log entry, or, when the same
    artifact (by content) already serves, `{"action": "unchanged", ...}` and nothing is written or
    logged: a second history step for it would make the next rollback a step to itself."""
    home = home or pickwise_home()
    directory = Path(directory)
    meta = read_meta(directory)  # ArtifactError when it is not an artifact
    version = artifact_version(directory)
    pointer = read_pointer(home)
    serving = pointer.get("current") or _shipped()
    if version == serving["version"]:
        return {"action": "unchanged", "version": version, "path": serving["path"], "source": str(directory.resolve())}
    worse, verdicts, figures = judge(meta)
    if worse and not force:
        raise PromotionRefused(f"{directory} is not promoted: " + "; ".join(worse) + " (--force promotes it anyway)")
    copy = home / COPIES_DIR / version
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_name(f".{version}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(directory, tmp)
        tmp.rename(copy)
    entry = {"path": str(copy), "version": version, "source": str(directory.resolve()), "promoted_at": _now()}
    history = pointer["history"] + ([pointer["current"]] if pointer.get("current") else [])
    _write_pointer(home, {"current": entry, "history": history})
    record = {"action": "promote", **entry, "forced": bool(force and worse), "worse": worse, "verdicts": verdicts,
              "figures": figures, "previous": pointer.get("current"),
              # the gate compares the candidate with the artifact it was fitted on, which need not be what served
              "judged_against": (meta.get("refit") or {}).get("base_version"), "replaced": serving["version"]}
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
              "to": previous or _shipped()}
    _log(home, record)
    return record
