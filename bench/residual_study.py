"""Would a per-prompt residual next to the task mixture route better? Frozen encoder, validation rows only.

Why: the task mixture gives every prompt read as the same task the same vector u, so what
makes one prompt harder than another within a task is lost (docs/predictor.md). Without
a GPU the encoder cannot be retrained with a new head, but its pooled embeddings can be
computed once and a second stage fitted on them in seconds:

    score(p, m) = u(p) . e_m + b_m + R(p) . x_m,    R(p) = W LayerNorm(pooled(p))   (r dims)

which keeps the IRT form (u' = [u, R] against e' = [e, x]), so probe-fitted cold start would
still work. W, x, e and b are fitted on the artifact's training rows (AdamW, masked BCE, early
stopping on validation loss, as `pickwise train` does), encoder, classifier and task vectors
frozen. r = 0 refits e and b alone: the control that separates "refitting" from "the new term".
Each candidate gets its own temperature on the validation rows and is scored there (capture,
Brier, ECE, and shipped − candidate as a paired bootstrap interval); the test rows are not read.

Run: .venv/bin/python -m bench.residual_study [--artifact DIR] [--seed 0] [--name residual_study]
(the first run encodes the training and validation prompts; cached under .cache/residual_study).
Writes bench/results/<name>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.compare_artifacts import PRICED_TABLES  # noqa: E402
from pickwise.predictor.artifact import default_artifact_dir  # noqa: E402
from pickwise.predictor.backbone import encode_texts, length_buckets, pad_batch  # noqa: E402
from pickwise.predictor.calibration import fit_temperature, masked_bce  # noqa: E402
from pickwise.predictor.data import default_data_dir, load_table  # noqa: E402
from pickwise.predictor.evaluate import registry_cost_estimate  # noqa: E402
from pickwise.predictor.inference import load_predictor  # noqa: E402
from pickwise.predictor.routing_metrics import routing_figures  # noqa: E402
from pickwise.registry import default_registry_dir, load_registry  # noqa: E402

# (residual dims r, weight decay on W): fixed before any figure, by docs/decisions/residual.md's rule
CANDIDATES = ((0, 0.0), (1, 1e-4), (1, 1e-2), (8, 1e-4), (8, 1e-2))
SHIPPED = "shipped"


@torch.no_grad()
def pooled_and_u(predictor, prompts: list[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The tuned encoder's pooled embeddings and the task mixture's u, fp32, in length buckets."""
    model = predictor.model
    cfg = model.config
    encoded = encode_texts(predictor.tokenizer, prompts, cfg.max_len, cfg.head_frac)
    pooled = np.zeros((len(prompts), model.bert.config.hidden_size), np.float32)
    u = np.zeros((len(prompts), cfg.dim), np.float32)
    for batch in length_buckets([len(x) for x in encoded.ids], batch_size):
        ids, mask = pad_batch([encoded.ids[i] for i in batch])
        p = model.top(model.stem(ids, mask), mask)
        pooled[batch], u[batch] = p.numpy(), model.prompt_vectors(p).numpy()
    return pooled, u


def features(predictor, cache_dir: Path) -> dict:
    """Training and validation rows of every priced table: pooled, u, labels [N, trained models], split, table."""
    path = cache_dir / f"{predictor.version}.npz"
    if path.exists():
        return dict(np.load(path, allow_pickle=False))
    parts = []
    for k, stem in enumerate(PRICED_TABLES):
        table = load_table(default_data_dir() / f"{stem}.parquet")
        split = predictor.row_split(table)
        rows = split != "test"
        sub = table.subset(rows)
        labels = np.full((len(sub), len(predictor.model_names)), np.nan, np.float32)
        for j, name in enumerate(table.model_names):
            labels[:, predictor.trained_index(name)] = sub.quality[:, j]
        pooled, u = pooled_and_u(predictor, sub.prompts)
        parts.append({"pooled": pooled, "u": u, "labels": labels, "split": split[rows].astype(str),
                      "table": np.full(len(sub), k), "row": np.flatnonzero(rows)})
        print(f"encoded {stem}: {len(sub)} prompts", flush=True)
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


class Residual(torch.nn.Module):
    """logits = u e^T + b + (W LN(pooled)) x^T, starting from the artifact's e and b."""

    def __init__(self, vectors: torch.Tensor, bias: torch.Tensor, width: int, r: int):
        super().__init__()
        self.e, self.b = torch.nn.Parameter(vectors.clone()), torch.nn.Parameter(bias.clone())
        self.r = r
        if r:
            self.norm = torch.nn.LayerNorm(width)
            self.w = torch.nn.Linear(width, r, bias=False)
            torch.nn.init.normal_(self.w.weight, std=0.01)
            self.x = torch.nn.Parameter(torch.zeros(len(bias), r))

    def forward(self, u: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        z = u @ self.e.T + self.b
        return z + self.w(self.norm(pooled)) @ self.x.T if self.r else z


def fit(model: Residual, data: dict, weight_decay: float, *, epochs: int = 60, patience: int = 3,
        batch_size: int = 64, lr: float = 2e-3, seed: int = 0) -> tuple[float, int]:
    """AdamW on the training rows, early stopping on validation loss; loads the best state. (loss, epoch)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    u, pooled, labels = (torch.as_tensor(data[k]) for k in ("u", "pooled", "labels"))
    train, val = np.flatnonzero(data["split"] == "train"), np.flatnonzero(data["split"] == "val")
    groups = [{"params": [model.e, model.b], "weight_decay": 1e-4}]
    if model.r:
        groups += [{"params": list(model.w.parameters()), "weight_decay": weight_decay},
                   {"params": [model.x, *model.norm.parameters()], "weight_decay": 1e-4}]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    best = (math.inf, None, 0)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(train)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            loss = masked_bce(model(u[rows], pooled[rows]), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = float(masked_bce(model(u[val], pooled[val]), labels[val]))
        if val_loss < best[0] - 1e-4:
            best = (val_loss, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
        elif epoch - best[2] >= patience:
            break
    model.load_state_dict(best[1])
    return best[0], best[2]


def validation_figures(logits: dict[str, np.ndarray], data: dict, predictor, snapshot, bootstrap: int) -> dict:
    """Per table and candidate on validation rows: capture, shipped − it [95%], Brier, ECE (own temperature each)."""
    val = data["split"] == "val"
    temps = {n: fit_temperature(z[val], data["labels"][val]) for n, z in logits.items()}
    out = {}
    for k, stem in enumerate(PRICED_TABLES):
        table = load_table(default_data_dir() / f"{stem}.parquet")
        mine = val & (data["table"] == k)
        rows = data["row"][mine]
        columns = [predictor.trained_index(m) for m in table.model_names]
        preds = {n: 1 / (1 + np.exp(-z[mine][:, columns] / temps[n])) for n, z in logits.items()}
        sub = table.subset(rows)
        figs = routing_figures(sub.quality, sub.cost, registry_cost_estimate(table, snapshot)[rows], preds,
                               table.model_names, reference=SHIPPED, n_bootstrap=bootstrap)
        out[stem] = {}
        for n in logits:
            r, d = figs.routers[n], figs.routers[n].capture_diff_bootstrap
            out[stem][n] = {"capture": r.capture, "brier": r.brier, "ece": r.ece,
                            "shipped_minus_this": None if d is None else [d.lo, d.hi]}
    return {"temperature": temps, "tables": out}


def markdown(result: dict) -> str:
    lines = [f"Artifact {result['artifact']}; validation rows only; paired bootstrap {result['bootstrap']}; "
             f"seed {result['seed']}.", "",
             "| candidate | val loss | best epoch | " + " | ".join(f"{v} capture (shipped − this)" for v in PRICED_TABLES.values())
             + " | mean capture |", "|---" * (len(PRICED_TABLES) + 4) + "|"]
    for name, c in result["candidates"].items():
        cells = []
        for stem in PRICED_TABLES:
            r = result["tables"][stem][name]
            d = r["shipped_minus_this"]
            cells.append(f"{r['capture']:.3f}" + ("" if d is None else " [{:+.3f}, {:+.3f}]".format(*d)))
        mean = np.mean([result["tables"][s][name]["capture"] for s in PRICED_TABLES])
        lines.append(f"| {name} | {c['val_loss']:.5f} | {c.get('best_epoch', '-')} | " + " | ".join(cells) + f" | {mean:.3f} |")
    lines += ["", "Brier / ECE (validation rows):", ""]
    for name in result["candidates"]:
        lines.append(f"- {name}: " + "; ".join(f"{PRICED_TABLES[s]} {result['tables'][s][name]['brier']:.4f} / "
                                                f"{result['tables'][s][name]['ece']:.3f}" for s in PRICED_TABLES))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifact", default=str(default_artifact_dir()))
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order of every fit")
    parser.add_argument("--name", default="residual_study")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    predictor = load_predictor(args.artifact, "cpu", precision="fp32")
    snapshot = load_registry(default_registry_dir())
    data = features(predictor, ROOT / ".cache" / "residual_study")
    vectors = torch.as_tensor(predictor.model.model_vectors.detach().float())
    bias = torch.as_tensor(predictor.model.model_bias.detach().float())
    u, pooled = torch.as_tensor(data["u"]), torch.as_tensor(data["pooled"])
    val = data["split"] == "val"
    with torch.no_grad():
        logits = {SHIPPED: (u @ vectors.T + bias).numpy()}
    candidates = {SHIPPED: {"val_loss": float(masked_bce(torch.as_tensor(logits[SHIPPED][val]),
                                                          torch.as_tensor(data["labels"][val])))}}
    for r, weight_decay in CANDIDATES:
        name = f"r{r}" + (f"_wd{weight_decay:g}" if r else "")
        model = Residual(vectors, bias, pooled.shape[1], r)
        val_loss, epoch = fit(model, data, weight_decay, seed=args.seed)
        with torch.no_grad():
            logits[name] = model(u, pooled).numpy()
        candidates[name] = {"r": r, "weight_decay": weight_decay, "val_loss": val_loss, "best_epoch": epoch}
        print(f"{name}: validation loss {val_loss:.5f} (epoch {epoch})", flush=True)
    figures = validation_figures(logits, data, predictor, snapshot, args.bootstrap)
    result = {"artifact": args.artifact, "bootstrap": args.bootstrap, "seed": args.seed, "candidates": candidates, **figures}
    out = ROOT / "bench" / "results"
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
