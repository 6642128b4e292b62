"""`evaluate_table` end to end on a small synthetic table, the report/plot outputs and `pickwise eval` errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pickwise.api.cli.main import main
from pickwise.predictor.baselines import TfidfLogisticRouter
from pickwise.predictor.data import RoutingTable, split_labels
from pickwise.predictor.evaluate import evaluate_table, fitted_cost_estimate, format_report, registry_cost_estimate
from pickwise.predictor.plots import plot_reports
from pickwise.registry import Latency, ModelSpec, Pricing, RegistrySnapshot

MODELS = ["small", "large"]
PRICES = {"small": (0.1, 0.2), "large": (2.0, 6.0)}  # USD per million input / output tokens


def synthetic_table(n: int = 400, seed: int = 0) -> RoutingTable:
    """The small model solves arithmetic prompts, the large one everything but a few riddles."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(["math", "history", "riddle"], size=n, p=[0.4, 0.45, 0.15])
    prompts = [f"{k} question number {i} about {rng.choice(['cats', 'ships', 'kings'])}" for i, k in enumerate(kinds)]
    quality = np.column_stack([
        (kinds == "math") | (rng.uniform(size=n) < 0.1),
        (kinds != "riddle") & (rng.uniform(size=n) < 0.95),
    ]).astype(float)
    quality[rng.uniform(size=n) < 0.05, 0] = np.nan
    in_tokens = rng.integers(20, 400, n).astype(float)
    out_tokens = rng.integers(10, 300, (n, 2)).astype(float)
    cost = np.column_stack([(in_tokens * PRICES[m][0] + out_tokens[:, j] * PRICES[m][1]) / 1e6
                            for j, m in enumerate(MODELS)])
    return RoutingTable(name="synthetic", path=Path("synthetic.parquet"), sha256="0" * 64,
                        prompt_ids=np.array([f"p{i}" for i in range(n)]), prompts=prompts,
                        task=kinds.astype(object), model_names=list(MODELS), quality=quality, cost=cost,
                        in_tokens=in_tokens, out_tokens=out_tokens)


class HashSplitTfidfPredictor:
    """A real (if simple) predictor with eval's interface: TF-IDF routers trained on its hash-split train rows."""

    version = "tfidf-hash-split-test"

    def __init__(self, table: RoutingTable):
        train = self.row_split(table) == "train"
        self.models = table.model_names
        self.router = TfidfLogisticRouter().fit([table.prompts[i] for i in np.flatnonzero(train)],
                                                table.quality[train])

    def row_split(self, table: RoutingTable) -> np.ndarray:
        return split_labels(table.prompts, seed=0)

    def predict(self, prompts: list[str], models: list[str], progress: bool = False) -> np.ndarray:
        columns = [self.models.index(m) for m in models]
        return self.router.predict(prompts)[:, columns]


def snapshot() -> RegistrySnapshot:
    specs = tuple(
        ModelSpec(name=m, provider="test", pricing=Pricing(input_per_million=p_in, output_per_million=p_out),
                  latency=Latency(ttft_ms=100, output_tokens_per_s=50), context_window=8000,
                  max_output_tokens=1000, expected_output_tokens=150)
        for m, (p_in, p_out) in PRICES.items()
    )
    return RegistrySnapshot(models=specs, version="test", directory=Path("test-registry"))


@pytest.fixture(scope="module")
def report():
    table = synthetic_table()
    return evaluate_table(table, HashSplitTfidfPredictor(table), snapshot(), bootstrap=50, seed=0)


def test_evaluate_table_scores_only_test_rows_with_baselines(report):
    table = synthetic_table()
    split = split_labels(table.prompts, seed=0)
    assert report.n_test == int((split == "test").sum()) == report.figures.n_prompts
    assert report.n_train == int((split == "train").sum())
    routers = report.figures.routers
    assert set(routers) == {"zero", "oracle", "pickwise", "prior", "tfidf"}
    # pickwise is the same TF-IDF model trained on the same rows: identical figures, zero difference
    assert routers["pickwise"].aiq == pytest.approx(routers["tfidf"].aiq)
    assert routers["tfidf"].capture_diff_bootstrap.mean == pytest.approx(0.0)
    # the topic signal is easy: the text router captures a lot, the prior little
    assert routers["tfidf"].capture > 0.5 > routers["prior"].capture
    assert routers["tfidf"].brier < routers["prior"].brier
    assert report.figures.best_model.name == "large"
    assert "registry" in report.cost_estimate
    json.loads(report.model_dump_json())


def test_registry_cost_estimate_uses_expected_output_tokens():
    table = synthetic_table(n=5)
    c_hat = registry_cost_estimate(table, snapshot())
    expected = (table.in_tokens[:, None] * [0.1, 2.0] + 150 * np.array([0.2, 6.0])) / 1e6
    np.testing.assert_allclose(c_hat, expected)
    table.cost_is_input_only = True  # LLMRouter: realised cost is input-only, so is the estimate
    np.testing.assert_allclose(registry_cost_estimate(table, snapshot()), table.in_tokens[:, None] * [0.1, 2.0] / 1e6)
    table.model_names = ["small", "unknown-model"]
    with pytest.raises(ValueError, match="unknown-model"):
        registry_cost_estimate(table, snapshot())


def test_fitted_cost_estimate_recovers_prices_from_training_rows():
    table = synthetic_table()
    c_hat = fitted_cost_estimate(table, np.arange(300))
    mean_out = table.out_tokens[:300].mean(axis=0)
    expected = (table.in_tokens[:, None] * [0.1, 2.0] + mean_out * np.array([0.2, 6.0])) / 1e6
    np.testing.assert_allclose(c_hat, expected, rtol=1e-6)


def test_format_report_and_plot(report, tmp_path):
    text = format_report([report, report])
    for name in ("pickwise", "prior", "tfidf", "zero", "oracle", "capture", "synthetic"):
        assert name in text
    assert "predictor tfidf-hash-split-test, fp32)" in text  # which artifact, at which precision
    path = plot_reports([report, report], tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_path_names_the_file_written_and_refuses_what_cannot_be_drawn(report, tmp_path):
    from pickwise.predictor.plots import plot_path

    assert plot_reports([report], tmp_path / "curves") == tmp_path / "curves.png"  # matplotlib adds .png
    assert (tmp_path / "curves.png").is_file() and plot_path(tmp_path / "c.svg") == tmp_path / "c.svg"
    with pytest.raises(ValueError, match=r"cannot draw a '\.xyz' file"):
        plot_path(tmp_path / "c.xyz")
    with pytest.raises(ValueError, match="is a directory"):
        plot_path(tmp_path)


def test_predictor_without_held_out_rows_is_an_error():
    table = synthetic_table(n=50)

    class TrainedOnEverything(HashSplitTfidfPredictor):
        def row_split(self, table):
            return np.full(len(table), "train", dtype=object)

    with pytest.raises(ValueError, match="no held-out rows"):
        evaluate_table(table, TrainedOnEverything(table), snapshot(), bootstrap=0)


def test_cli_reports_missing_and_unreadable_tables(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "nope.parquet"), "--cost-estimate", "table"]) == 2
    assert "nope.parquet: no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.parquet"
    junk.write_text("not a parquet file")
    assert main(["eval", "--data", str(junk), "--cost-estimate", "table"]) == 2
    assert "junk.parquet: not a readable" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # a usage error, before anything is read
        main(["eval", "--data", str(junk), "--bootstrap", "-1"])
    assert exit_.value.code == 2 and "argument --bootstrap: must be an integer >= 0, got -1" in capsys.readouterr().err
    assert main(["eval", "--data", str(junk), "--plot", str(tmp_path / "no" / "dir" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "--data", str(junk), "--plot", str(tmp_path / "x.xyz")]) == 2  # before reading any table
    assert "cannot draw a '.xyz' file" in capsys.readouterr().err
    assert main(["eval", "--data", str(junk), "--plot", "-"]) == 2  # wrote a file named '-.png'
    assert "--plot -: the plot is a PNG (or another image) file; give its file name" in capsys.readouterr().err


@pytest.mark.integration
def test_cli_eval_runs_the_shipped_predictor_at_the_requested_precision(tmp_path, capsys):
    """`pickwise eval` end to end on the shipped artifact: fp32 by default, `--precision` reaches the
    encoder (the report names how it ran, and bf16's probabilities differ from fp32's a little)."""
    import pandas as pd

    from pickwise.predictor.artifact import default_artifact_dir, read_meta

    names = read_meta(default_artifact_dir())["model_names"][:2]  # two trained models: no probe fit needed
    table = synthetic_table(n=120)
    frame = pd.DataFrame({"prompt_id": table.prompt_ids, "prompt": table.prompts, "in_tokens": table.in_tokens})
    for j, name in enumerate(names):
        frame[f"q__{name}"], frame[f"cost__{name}"] = table.quality[:, j], table.cost[:, j]
    path = tmp_path / "tiny_eval.parquet"
    frame.to_parquet(path)
    reports = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.json"
        args = ["eval", "--data", str(path), "--cost-estimate", "table", "--bootstrap", "0", "--json", str(out)]
        assert main(args + (["--precision", precision] if precision != "fp32" else [])) == 0
        assert f", {precision})" in capsys.readouterr().out
        reports[precision] = json.loads(out.read_text())[0]
    assert [r["predictor_precision"] for r in reports.values()] == ["fp32", "bf16"]
    brier = [r["figures"]["routers"]["pickwise"]["brier"] for r in reports.values()]
    assert brier[0] != brier[1] and abs(brier[0] - brier[1]) < 0.01
    # `--json -`: stdout is the JSON alone (the table moves to stderr), not the table with JSON after it
    assert main(["eval", "--data", str(path), "--cost-estimate", "table", "--bootstrap", "0", "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)[0]["figures"] == reports["fp32"]["figures"] and "router" in err
    frame["q__zz-untrained"], frame["cost__zz-untrained"] = table.quality[:, 0], table.cost[:, 0]
    frame.to_parquet(path)  # a model the artifact never saw: a clear error, not a KeyError traceback
    assert main(["eval", "--data", str(path), "--cost-estimate", "table", "--bootstrap", "0"]) == 2
    assert "model(s) 'zz-untrained' are not in the predictor artifact" in capsys.readouterr().err
