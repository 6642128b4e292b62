"""Training: cache the frozen stem once, tune LoRA top layers + heads with a masked multi-label loss.

Why this shape: a full LoRA backward pass through MiniLM is slow, and the stem's outputs do not
change while training, so they are computed once (a forward pass) and the optimiser only runs
the top layers. The same code runs on CUDA when present (training times: docs/predictor.md).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pickwise.files import atomic_file
from pickwise.predictor.artifact import save_artifact
from pickwise.predictor.backbone import BACKBONE_NAME, encode_texts, length_buckets, pad_batch
from pickwise.predictor.calibration import fit_temperature, masked_bce
from pickwise.predictor.data import RoutingTable
from pickwise.predictor.dataset import TrainingSet, build_training_set
from pickwise.predictor.model import ModelConfig, QualityModel


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 16
    epoch_fraction: float = 0.5  # share of the training rows drawn (without replacement) per epoch
    batch_size: int = 64
    lr_lora: float = 5e-4
    lr_head: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 3  # epochs without validation improvement before stopping
    seed: int = 0  # initialisation, dropout and batch order
    split_seed: int = 0  # the train/val/test split: kept apart so runs with other seeds score the same rows
    val_frac: float = 0.1
    test_frac: float = 0.2
    exclude_models: tuple[str, ...] = ()
    max_rows_per_table: int | None = None  # for quick experiments and tests
    encode_batch_size: int = 64
    stem_cache_dir: str | None = None  # keep the frozen stem's outputs on disk for later runs
    use_tasks: bool = True  # prompt vectors as task mixtures (model.TaskMixture) where the data names tasks
    task_weight: float = 1.0  # weight of the task/subtask cross-entropy next to the quality loss
    subtask_l2: float = 1e-3  # shrinks subtask vectors towards their task's: few rows per subtask

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: QualityModel
    meta: dict
    data: TrainingSet


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def cache_stem(model: QualityModel, ids: list[list[int]], device, batch_size: int, progress: bool) -> list[torch.Tensor]:
    """Stem hidden states per prompt (fp16, CPU, unpadded), computed once in length buckets."""
    out: list[torch.Tensor | None] = [None] * len(ids)
    buckets = length_buckets([len(x) for x in ids], batch_size)
    for batch in tqdm(buckets, desc="encoding (frozen stem)", disable=not progress, leave=False):
        input_ids, mask = pad_batch([ids[i] for i in batch])
        hidden = model.stem(input_ids.to(device), mask.to(device)).to("cpu", torch.float16)
        for k, i in enumerate(batch):
            out[i] = hidden[k, : len(ids[i])].clone()
    return out  # type: ignore[return-value]


def cached_stem(model: QualityModel, ids: list[list[int]], device, config: TrainConfig, progress: bool) -> list[torch.Tensor]:
    """`cache_stem`, reusing a copy on disk when the same backbone, cut and token ids were encoded before.

    The stem is frozen, so runs over the same rows (say with some models held out, or other
    head settings) can share it; on CPU it is the most expensive step after training itself.
    """
    if not config.stem_cache_dir:
        return cache_stem(model, ids, device, config.encode_batch_size, progress)
    import hashlib

    digest = hashlib.sha256()
    digest.update(f"{BACKBONE_NAME}|split={model.split}|{model.bert.config.to_json_string()}".encode())
    for seq in ids:
        digest.update(np.asarray(seq, dtype=np.int32).tobytes() + b"|")
    path = Path(config.stem_cache_dir) / f"stem-{digest.hexdigest()[:24]}.pt"
    if path.exists():
        return torch.load(path)
    cache = cache_stem(model, ids, device, config.encode_batch_size, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as fh:
        torch.save(cache, fh)
    return cache


def stack_hidden(cache: list[torch.Tensor], rows) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(cache[i].shape[0] for i in rows)
    dim = cache[rows[0]].shape[1]
    hidden = torch.zeros(len(rows), width, dim, dtype=torch.float32)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for k, i in enumerate(rows):
        n = cache[i].shape[0]
        hidden[k, :n] = cache[i].float()
        mask[k, :n] = 1
    return hidden, mask


def shuffled_buckets(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of similar length in a fresh random order each epoch (noise keeps batches varied)."""
    noisy = lengths + rng.uniform(0, 16, size=len(lengths))
    order = np.argsort(noisy, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def task_vocabulary(labels: np.ndarray | None, train_rows: np.ndarray) -> list[str]:
    """Sorted task labels seen on training rows ([] without labels): the classifier's classes."""
    return [] if labels is None else sorted({str(x) for x in labels[train_rows]})


def task_targets(labels: np.ndarray | None, vocabulary: list[str]) -> torch.Tensor | None:
    """Class index per row; -100 (ignored by cross-entropy) for a label unseen in training."""
    if labels is None or not vocabulary:
        return None
    index = {t: i for i, t in enumerate(vocabulary)}
    return torch.as_tensor([index.get(str(x), -100) for x in labels], dtype=torch.long)


def task_loss(model: QualityModel, logits, targets: tuple[torch.Tensor, torch.Tensor], config: TrainConfig) -> torch.Tensor:
    """Cross-entropy of the task and subtask classifiers, plus the L2 pull of subtask vectors to 0."""
    ce = torch.nn.functional.cross_entropy
    loss = ce(logits[0], targets[0], ignore_index=-100)
    if model.config.n_subtasks:
        loss = loss + ce(logits[1], targets[1], ignore_index=-100)
    return config.task_weight * loss + config.subtask_l2 * model.tasks.subtask_vectors.pow(2).sum()


@torch.no_grad()
def logits_from_cache(model, cache, rows: np.ndarray, device, batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        hidden, mask = stack_hidden(cache, batch)
        u = model.prompt_vectors(model.top(hidden.to(device), mask.to(device)))
        out.append(model.scores(u).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.model_vectors.shape[0]))


def train(
    tables: list[RoutingTable],
    out_dir: str | Path | None,
    config: TrainConfig | None = None,
    *,
    snapshot=None,
    backbone=None,
    tokenizer=None,
    device: str | None = None,
    progress: bool = True,
    probe_prompts: tuple[list[str], list[str]] | None = None,
) -> TrainResult:
    """Fit a QualityModel on `tables`; write the artifact to `out_dir` (if given) and return it.

    `probe_prompts` = (prompt_ids, prompts) of the cold-start probe set: their prompt vectors are
    stored in the artifact so a new model's vector can be fitted in milliseconds later.
    """
    from pickwise.predictor.backbone import load_backbone, load_tokenizer

    config = config or TrainConfig()
    set_seed(config.seed)
    dev = pick_device(device)
    started = time.time()
    if config.max_rows_per_table:
        tables = [t.subset(np.arange(min(len(t), config.max_rows_per_table))) for t in tables]
    data = build_training_set(
        tables, snapshot, config.exclude_models, seed=config.split_seed, val_frac=config.val_frac, test_frac=config.test_frac
    )
    train_rows, val_rows = data.rows("train"), data.rows("val")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError("training needs rows in both the train and the validation split")
    tokenizer = tokenizer or load_tokenizer()
    backbone = backbone if backbone is not None else load_backbone()
    tasks = task_vocabulary(data.task, train_rows) if config.use_tasks else []
    if len(tasks) < 2:  # one task: the mixture would be one constant vector, i.e. the prior router
        tasks = []
    subtasks = task_vocabulary(data.subtask, train_rows) if tasks else []
    if subtasks == tasks:  # no table has a finer label: one level is enough
        subtasks = []
    mc = replace(config.model, n_tasks=len(tasks), n_subtasks=len(subtasks))
    model = QualityModel(backbone, len(data.model_names), mc).to(dev)
    with torch.no_grad():  # start each model at its base rate: the bias is then the prior router
        rate = np.nanmean(data.labels[train_rows], axis=0)
        rate = np.clip(np.nan_to_num(rate, nan=0.5), 0.02, 0.98)
        model.model_bias.copy_(torch.as_tensor(np.log(rate / (1 - rate)), dtype=torch.float32))

    used = np.concatenate([train_rows, val_rows])
    encoded = encode_texts(tokenizer, [data.prompts[i] for i in used], mc.max_len, mc.head_frac)
    model.eval()
    cache = cached_stem(model, encoded.ids, dev, config, progress)
    pos_train = np.arange(len(train_rows))
    pos_val = np.arange(len(train_rows), len(used))
    labels = torch.as_tensor(data.labels[used])
    targets = None
    if tasks:
        targets = (task_targets(data.task[used], tasks),
                   task_targets(data.subtask[used], subtasks) if subtasks else torch.zeros(len(used), dtype=torch.long))
    lengths = np.array([len(x) for x in encoded.ids], dtype=float)

    lora_params = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    head_params = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    optimizer = torch.optim.AdamW(
        [{"params": lora_params, "lr": config.lr_lora}, {"params": head_params, "lr": config.lr_head}],
        weight_decay=config.weight_decay,
    )
    steps_per_epoch = math.ceil(max(1, int(len(pos_train) * min(config.epoch_fraction, 1.0))) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, total // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine decay to 0
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))
    )
    rng = np.random.default_rng(config.seed)
    best = (math.inf, None, -1)
    history = []
    bar = tqdm(total=total, desc="training", disable=not progress)
    for epoch in range(config.epochs):
        model.train()
        running = []
        epoch_rows = pos_train
        if config.epoch_fraction < 1.0:  # validate (and maybe stop early) more often than once a pass
            epoch_rows = np.sort(rng.choice(pos_train, size=max(1, int(len(pos_train) * config.epoch_fraction)), replace=False))
        for batch in shuffled_buckets(lengths[epoch_rows], config.batch_size, rng):
            rows = epoch_rows[batch]
            hidden, mask = stack_hidden(cache, rows)
            u, task_logits = model.prompt_outputs(model.top(hidden.to(dev), mask.to(dev)))
            loss = masked_bce(model.scores(u), labels[rows].to(dev))
            if task_logits is not None:
                loss = loss + task_loss(model, task_logits, (targets[0][rows].to(dev), targets[1][rows].to(dev)), config)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            running.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(running[-50:]):.4f}")
        val_logits = logits_from_cache(model, cache, pos_val, dev)
        val_loss = float(masked_bce(torch.as_tensor(val_logits), labels[pos_val]))
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(running)), "val_loss": val_loss})
        if val_loss < best[0] - 1e-4:
            best = (val_loss, {k: v.detach().clone() for k, v in model.state_dict().items()}, epoch + 1)
        elif epoch + 1 - best[2] >= config.patience:
            break
    bar.close()
    model.load_state_dict(best[1])
    model.eval()
    val_logits = logits_from_cache(model, cache, pos_val, dev)
    temperature = fit_temperature(val_logits, data.labels[val_rows])
    calibration = validation_calibration(val_logits, data.labels[val_rows], temperature)

    probe_vectors = None
    if probe_prompts is not None:
        from pickwise.predictor.inference import encode_prompt_vectors

        ids, texts = probe_prompts
        probe_vectors = (list(ids), encode_prompt_vectors(model, tokenizer, texts, dev, mc.max_len, mc.head_frac)[0])

    meta = {
        "backbone": BACKBONE_NAME,
        "model_names": data.model_names,
        "aliases": data.aliases,
        "model_tables": data.model_tables(),
        "tasks": tasks,
        "subtasks": subtasks,
        "temperature": temperature,
        "train_config": {k: v for k, v in config.to_dict().items() if k != "model"},
        "data": [{"table": t.name, "file": t.path.name, "sha256": t.sha256, "rows": len(t)} for t in tables],
        "split_rule": {"seed": config.split_seed, "val_frac": config.val_frac, "test_frac": config.test_frac,
                       "by": "sha1 of the question stem (predictor.data.split_labels)"},
        "rows": {s: int((data.split == s).sum()) for s in ("train", "val", "test")},
        "history": history,
        "best_epoch": best[2],
        "validation": calibration,
        "train_seconds": round(time.time() - started, 1),
        "device": str(dev),
    }
    splits = {
        t.name: {s: data.prompt_ids[(data.table == t.name) & (data.split == s)].tolist() for s in ("train", "val")}
        for t in tables
    }
    if out_dir is not None:
        save_artifact(out_dir, model, meta, splits, probe_vectors)
    return TrainResult(model=model, meta=meta, data=data)


def validation_calibration(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    """Brier and ECE on the validation split before and after temperature scaling."""
    from pickwise.predictor.routing_metrics import brier, ece

    before = 1 / (1 + np.exp(-logits))
    after = 1 / (1 + np.exp(-logits / temperature))
    return {
        "brier_raw": brier(before, labels),
        "ece_raw": ece(before, labels),
        "brier": brier(after, labels),
        "ece": ece(after, labels),
        "temperature": temperature,
    }
