"""`pickwise train` and `pickwise predict`: thin front-ends over predictor.train / predictor.inference."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from pickwise.api.cli.options import (
    MODELS_LISTING,
    CliError,
    add_artifact_option,
    add_precision_option,
    add_registry_option,
    load_registry_option,
    load_tables_option,
    name_list,
    number,
)
from pickwise.api.cli.output import check_output_path, open_output
from pickwise.api.cli.remote import Server, add_server_option, server_url
from pickwise.api.service import check_model_list

# Recipe options default to None and are passed on only when given: the defaults live in
# predictor.model.ModelConfig / predictor.train.TrainConfig alone (importing them here would load
# torch for every command), and `pickwise train --help` points there.
RECIPE_DEFAULT = "(default: the shipped recipe, listed in the README under \"The predictor\")"
MINILM_LAYERS = 6  # the backbone's depth, for range checks here (predictor.model.truncate_backbone checks it too)
MODEL_OPTIONS = ("dim", "backbone_layers", "lora_layers", "lora_r", "max_len")
# --server: prompts per POST /v1/predict, within the service's default inline limit (1,000) and, at
# this many characters (6 bytes each at worst, escaped), its 8 MiB body limit
REMOTE_CHUNK_PROMPTS = 256
REMOTE_CHUNK_CHARS = 1_000_000
TRAIN_OPTIONS = ("epochs", "epoch_fraction", "batch_size", "patience", "seed", "split_seed")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def register(sub) -> None:
    p = sub.add_parser("train", help="train a predictor artifact from routing tables")
    p.add_argument("--data", nargs="+", metavar="TABLE",
                   help="routing tables (default: the four priced tables in ../shared/data): wide parquet ones, or "
                        "logged outcomes in the long format of `outcomes import` (JSONL, CSV or parquet)")
    p.add_argument("--out", required=True, metavar="DIR", help="artifact directory to write")
    p.add_argument("--epochs", type=number(int, low=1), default=None, help=f"most epochs {RECIPE_DEFAULT}")
    p.add_argument("--epoch-fraction", type=number(above=0, high=1), default=None,
                   help=f"share of the training rows seen per epoch (validation runs after each) {RECIPE_DEFAULT}")
    p.add_argument("--batch-size", type=number(int, low=1), default=None, help=f"training batch size {RECIPE_DEFAULT}")
    p.add_argument("--lora-layers", type=number(int, low=0, high=MINILM_LAYERS), default=None, help=f"top transformer layers tuned with LoRA {RECIPE_DEFAULT}")
    p.add_argument("--backbone-layers", type=number(int, low=1, high=MINILM_LAYERS), default=None,
                   help="keep only MiniLM's lower N of its 6 layers: a faster, shallower encoder (default: all 6)")
    p.add_argument("--lora-r", type=number(int, low=1), default=None, help=f"LoRA rank (alpha = 2 x rank) {RECIPE_DEFAULT}")
    p.add_argument("--dim", type=number(int, low=1), default=None, help=f"size of prompt and model vectors {RECIPE_DEFAULT}")
    p.add_argument("--max-len", type=number(int, low=3, high=512), default=None, help=f"tokens read per prompt (head + tail) {RECIPE_DEFAULT}")
    p.add_argument("--patience", type=number(int, low=1), default=None,
                   help=f"epochs without validation improvement before stopping {RECIPE_DEFAULT}")
    p.add_argument("--no-tasks", action="store_true",
                   help="free per-prompt vectors instead of task mixtures (the tables' task columns go unused)")
    p.add_argument("--seed", type=int, default=None, help=f"initialisation, dropout and batch order {RECIPE_DEFAULT}")
    p.add_argument("--split-seed", type=int, default=None,
                   help=f"the train/val/test split by question stem (keep it to compare runs on the same rows) {RECIPE_DEFAULT}")
    p.add_argument("--exclude-models", type=name_list, default=[], metavar="A,B",
                   help="train without these models (cold-start studies)")
    p.add_argument("--max-rows-per-table", type=number(int, low=1), default=None)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--stem-cache", default=".cache/stem", metavar="DIR",
                   help="keep the frozen stem's outputs here and reuse them in later runs over the same rows")
    p.add_argument("--no-progress", action="store_true")
    add_registry_option(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("predict", help="predict per-model quality for prompts in a JSONL file")
    p.add_argument("--input", required=True, metavar="prompts.jsonl", help='lines {"id": str, "prompt": str}; - for stdin')
    p.add_argument("--models", type=name_list, default=None, metavar="A,B",
                   help="models to score, names or aliases, each once (default: every enabled registry model)")
    p.add_argument("--output", default="-", metavar="FILE", help="output JSONL (default stdout)")
    p.add_argument("--batch-size", type=number(int, low=1), default=64, help="prompts per encoder call (default 64)")
    p.add_argument("--estimates", action="store_true",
                   help="add per model the predicted answer length (output_tokens, cl100k_base; output_tokens_from: "
                        "outcomes, probe, trained or registry) and the cost_usd and latency_ms it implies, as select "
                        "decides with them")
    add_precision_option(p)
    p.add_argument("--no-progress", action="store_true")
    add_server_option(p)
    add_registry_option(p)
    add_artifact_option(p)
    p.set_defaults(func=run_predict)


def resolve_tables(paths: list[str] | None) -> list[Path]:
    from pickwise.predictor.data import PRICED_TABLES, default_data_dir

    chosen = [Path(p) for p in paths] if paths else [default_data_dir() / f"{stem}.parquet" for stem in PRICED_TABLES.values()]
    missing = [str(p) for p in chosen if not p.exists()]
    if missing:
        raise CliError(f"data table(s) not found: {', '.join(missing)}")
    return chosen


def train_config(args: argparse.Namespace):
    """The TrainConfig the options ask for: the given recipe options over the dataclasses' defaults."""
    from pickwise.predictor.model import ModelConfig
    from pickwise.predictor.train import TrainConfig

    model = _given(args, MODEL_OPTIONS)
    if "lora_r" in model:
        model["lora_alpha"] = 2 * model["lora_r"]
    return TrainConfig(
        model=ModelConfig(**model),
        **_given(args, TRAIN_OPTIONS),
        exclude_models=tuple(args.exclude_models),
        max_rows_per_table=args.max_rows_per_table,
        stem_cache_dir=args.stem_cache,
        use_tasks=not args.no_tasks,
    )


def _check_train_inputs(args: argparse.Namespace, config, tables, snapshot) -> None:
    """Everything that can be wrong with a training run, found before hours of training, not after.

    (Option ranges are argparse's; here: what needs the tables, the registry or the recipe's defaults.)
    """
    import torch

    from pickwise.predictor.artifact import ArtifactError, check_artifact_target
    from pickwise.predictor.dataset import canonical_name

    try:
        check_artifact_target(args.out)
    except ArtifactError as exc:
        raise CliError(f"--out {args.out}: {exc}") from None
    _check_stem_cache(args.stem_cache)
    mc = config.model
    depth = mc.backbone_layers or MINILM_LAYERS
    if mc.lora_layers > depth:
        raise CliError(f"--lora-layers {mc.lora_layers} exceeds the backbone's {depth} layers (--backbone-layers)")
    if args.device:
        try:
            device = torch.device(args.device)
        except RuntimeError as exc:
            raise CliError(f"--device {args.device}: {exc}") from None
        if device.type not in ("cpu", "cuda"):  # torch knows more kinds; training runs on these two
            raise CliError(f"--device {args.device}: expected cpu or cuda (cuda:N for one GPU of several)")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CliError(f"--device {args.device}: CUDA is not available on this machine")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise CliError(f"--device {args.device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                           f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    trained = {canonical_name(snapshot, m) for t in tables for m in t.model_names}  # as build_training_set names them
    unknown = [m for m in config.exclude_models if canonical_name(snapshot, m) not in trained]
    if unknown:
        raise CliError(f"--exclude-models: {', '.join(unknown)} not among the tables' models")
    if trained <= {canonical_name(snapshot, m) for m in config.exclude_models}:
        raise CliError("--exclude-models leaves no model to train on")


def _check_stem_cache(option: str | None) -> None:
    """`--stem-cache` is written after the stem has encoded every row (minutes on a CPU): a path that is a
    file, or under one, or in a directory that cannot be written fails there with a traceback."""
    if not option:
        return
    path = Path(option)
    existing = next(p for p in (path, *path.parents) if p.exists())  # the nearest part that is there
    if not existing.is_dir():
        raise CliError(f"--stem-cache {option}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK):
        raise CliError(f"--stem-cache {option}: directory {existing} is not writable")


def run_train(args: argparse.Namespace) -> int:
    from pickwise.predictor.train import train

    tables = load_tables_option([str(p) for p in resolve_tables(args.data)])
    snapshot = load_registry_option(args.registry)
    config = train_config(args)
    _check_train_inputs(args, config, tables, snapshot)
    probe = None
    try:
        from pickwise.registry.probes.probe_set import load_probe_set

        entries = load_probe_set()
        probe = ([e.prompt_id for e in entries], [e.prompt for e in entries])
    except (ImportError, FileNotFoundError):
        print("note: no probe set found; probe vectors will be computed when first needed", file=sys.stderr)
    result = train(tables, args.out, config, snapshot=snapshot, device=args.device,
                   progress=not args.no_progress, probe_prompts=probe)
    meta = result.meta
    print(json.dumps({"out": args.out, "models": len(meta["model_names"]), "rows": meta["rows"],
                      "best_epoch": meta["best_epoch"], "tasks": len(meta["tasks"]), "subtasks": len(meta["subtasks"]),
                      "validation": meta["validation"],
                      "train_seconds": meta["train_seconds"]}, indent=2))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from pickwise.api.cli.prompt_file import PromptFileError, read_prompt_file
    from pickwise.predictor.artifact import ArtifactError
    from pickwise.predictor.inference import load_predictor

    check_output_path("--output", args.output, [("--input", args.input)])
    try:
        lines = read_prompt_file(args.input)
    except PromptFileError as exc:
        raise CliError(str(exc)) from None
    url = server_url(args)
    if url and args.estimates:  # POST /v1/predict answers qualities only
        raise CliError(f"--estimates needs the predictor here: the server at {url} gives qualities only "
                       "(run with --server '')")
    if url:
        return _predict_remote(url, args, lines)
    snapshot = load_registry_option(args.registry)
    if args.models:
        check_model_list(snapshot, args.models, "models", MODELS_LISTING)  # as POST /v1/predict checks them
        called = {snapshot.get(name).name: name for name in args.models}  # registry name -> the name asked for
        models = [snapshot.get(name) for name in called]
    else:
        models = list(snapshot.enabled())
        called = {m.name: m.name for m in models}
    try:
        predictor = load_predictor(args.artifact, precision=args.precision)
    except (ArtifactError, FileNotFoundError, RuntimeError) as exc:  # RuntimeError: an ONNX export that failed
        raise CliError(str(exc)) from exc
    prompts = [line.prompt for line in lines]
    features = predictor.prompt_features(prompts, progress=not args.no_progress, batch_size=args.batch_size) \
        if prompts else None
    result = predictor.evidence(features.u, [predictor.model_vector(m, snapshot) for m in models], features.tasks,
                                features.truncated, features.pooled, features.unknown) if prompts else None
    truncated = result.truncated if prompts else []
    if args.estimates and prompts:
        from pickwise.registry import count_tokens_batch, estimate_cost_usd, estimate_latency_ms

        lengths, length_sources = predictor.output_tokens(features.u, models, result.open_ended, snapshot,
                                                            features.tasks, options=features.options)
        lengths = np.rint(lengths)
        prompt_tokens = np.asarray(count_tokens_batch(prompts))
    with open_output(args.output) as out:
        for i, line in enumerate(lines):
            record = {"id": line.id,
                      "quality": {called[m.name]: round(float(p), 6) for m, p in zip(models, result.quality[i])}}
            if truncated[i]:
                record["truncated"] = True
            if result.unreadable[i]:
                record["unreadable"] = True
            if result.low_confidence[i]:  # {model: why no evidence stands behind its quality here}
                record["low_confidence"] = {called[name]: why for name, why in sorted(result.low_confidence[i].items())}
            if args.estimates:
                record["output_tokens"] = {called[m.name]: int(n) for m, n in zip(models, lengths[i])}
                # where each length comes from: outcomes, probe, trained (the tables) or registry (its prior)
                record["output_tokens_from"] = {called[m.name]: src for m, src in zip(models, length_sources)}
                record["cost_usd"] = {called[m.name]: float(estimate_cost_usd(m, int(prompt_tokens[i]), int(n)))
                                      for m, n in zip(models, lengths[i])}
                record["latency_ms"] = {called[m.name]: round(float(estimate_latency_ms(m, int(prompt_tokens[i]), int(n))), 1)
                                        for m, n in zip(models, lengths[i])}
            out.write(json.dumps(record) + "\n")
    _report({asked: name for name, asked in called.items() if asked != name}, len(lines), len(models), sum(truncated))
    return 0


def _report(resolved: dict[str, str], prompts: int, models: int, n_cut: int) -> None:
    for asked, name in resolved.items():
        print(f"{asked}: answered for registry model {name}", file=sys.stderr)
    print(f"predicted {prompts} prompts x {models} models"
          + (f"; {n_cut} prompt{'s' if n_cut != 1 else ''} longer than the model's input {'were' if n_cut != 1 else 'was'} "
             "cut (head + tail kept)" if n_cut else ""),
          file=sys.stderr)


def _chunk(lines: list, start: int, max_prompts: int, max_chars: int = REMOTE_CHUNK_CHARS) -> list:
    """The prompts from `start` that one request takes: within the server's inline limit and body limit."""
    chunk, chars = [], 0
    for line in lines[start:start + max_prompts]:
        if chunk and chars + len(line.prompt) > max_chars:
            break
        chunk.append(line)
        chars += len(line.prompt)
    return chunk


def _predict_remote(url: str, args: argparse.Namespace, lines: list) -> int:
    """`predict` through POST /v1/predict, in chunks; the lines are the server's, written as they come."""
    from pickwise.api.schemas import PredictPrompt, PredictRequest, PredictResponse

    server = Server(url, args)
    names = args.models
    models, resolved, n_cut, done, max_prompts = [], {}, 0, 0, REMOTE_CHUNK_PROMPTS
    with open_output(args.output) as out:
        while done < len(lines):  # each pass answers at least one prompt, or raises
            chunk = _chunk(lines, done, max_prompts)
            request = PredictRequest.model_construct(
                prompts=[PredictPrompt.model_construct(id=line.id, prompt=line.prompt) for line in chunk], models=names)
            status, answer = server.call("POST", "/v1/predict", request.model_dump_json())
            limit = answer.get("limit") if status == 413 and isinstance(answer, dict) else None
            if isinstance(limit, int) and 0 < limit < len(chunk):  # the server takes fewer at once
                max_prompts = limit
                continue
            if status != 200:
                raise server.refusal(status, answer)
            answer = PredictResponse.model_validate(answer)
            models, resolved = answer.models, answer.resolved
            for record in answer.predictions:
                n_cut += bool(record.truncated)
                out.write(json.dumps(record.model_dump(exclude_none=True)) + "\n")
            done += len(chunk)
    _report(resolved, len(lines), len(models), n_cut)
    return 0
