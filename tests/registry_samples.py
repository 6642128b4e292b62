"""Small valid registry entries and probe results for the registry and `pickwise models` tests."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from pickwise.registry.probes.probe_set import load_probe_set


def model(name: str, **overrides) -> dict:
    """A valid model mapping; `overrides` replace top-level keys (None removes one)."""
    entry = {
        "name": name,
        "provider": "acme",
        "pricing": {"input_per_million": 1.0, "output_per_million": 2.0},
        "latency": {"ttft_ms": 300, "output_tokens_per_s": 100},
        "context_window": 8192,
        "max_output_tokens": 1024,
        "expected_output_tokens": 100,
    }
    for key, value in overrides.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


def write(directory: Path, file_name: str, data) -> Path:
    """Write `data` (models or raw text) as YAML to directory/file_name."""
    path = directory / file_name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def make_registry(directory: Path) -> Path:
    """A three-model registry: a.yaml holds one model, b.yaml holds two."""
    directory.mkdir(parents=True, exist_ok=True)
    write(directory, "a.yaml", model("alpha", aliases=["a1"]))
    write(directory, "b.yaml", "# two models\n" + yaml.safe_dump([model("beta"), model("gamma/large")], sort_keys=False))
    return directory


IDS = [e.prompt_id for e in load_probe_set()]


def scores(n: int = 60, offset: int = 0) -> dict[str, float]:
    """n distinct probe ids with scores spread over [0, 1]."""
    return {pid: round((i % 11) / 10, 1) for i, pid in enumerate(IDS[offset:offset + n])}


def csv_text(rows: dict[str, object]) -> str:
    return "prompt_id,score\n" + "".join(f"{p},{s}\n" for p, s in rows.items())


def jsonl_text(rows: dict[str, object]) -> str:
    return "".join(json.dumps({"prompt_id": p, "score": s}) + "\n" for p, s in rows.items())
