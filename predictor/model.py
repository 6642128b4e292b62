"""The quality model: LoRA-tuned MiniLM prompt encoder x learned model representations.

score(prompt, model) = <u(prompt), e_model> + b_model, a multidimensional IRT form: the prompt
vector u carries the prompt's "skill demands", e_model the model's abilities and b_model its
overall strength. All models share the encoder, so a model with few results still benefits
from every other model's labels, and a new model only needs (e, b) — which a few dozen probe
results determine (see `predictor.coldstart`), with no retraining.

Where the training data names tasks (`n_tasks > 0`), u is a task mixture: a classifier reads
the pooled embedding and u = sum_k p(task k | prompt) t_k + sum_j p(subtask j | prompt) s_j,
with learned task vectors t and subtask vectors s. Per-prompt 0/1 labels are noisy; per-task
abilities are estimated from hundreds of rows each, and on held-out rows this bottleneck
routes better than a free per-prompt vector (docs/predictor.md), while the prompt's
own wording still decides which tasks it is read as. Without tasks u comes from `PromptHead`.

The encoder is split in two: a frozen stem (embeddings + lower layers) and LoRA-tuned top
layers. The stem's outputs never change during training, so training computes them once and
caches them; on a CPU that turns a full backward pass into a pass over the top layers only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

LORA_TARGETS = ["query", "key", "value", "output.dense", "intermediate.dense"]


@dataclass
class ModelConfig:
    """Architecture hyper-parameters; stored in the artifact so loading rebuilds the same net."""

    dim: int = 64  # size of prompt vectors u and model vectors e
    hidden: int = 256  # width of the prompt head's hidden layer
    lora_layers: int = 4  # how many top transformer layers get LoRA (the rest form the frozen stem)
    backbone_layers: int | None = None  # keep only MiniLM's lower layers (None: all six); cost falls in proportion
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    dropout: float = 0.1
    max_len: int = 128
    head_frac: float = 0.4
    n_tasks: int = 0  # > 0: u is a mixture of task vectors (see module docstring); set by training
    n_subtasks: int = 0

    @property
    def uses_tasks(self) -> bool:
        return self.n_tasks > 0

    def to_dict(self) -> dict:
        return asdict(self)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class PromptHead(nn.Module):
    """Pooled sentence embedding -> prompt vector u."""

    def __init__(self, width: int, hidden: int, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(width),
            nn.Dropout(dropout),
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


class TaskMixture(nn.Module):
    """Pooled embedding -> task and subtask posteriors -> their expected task vectors (u)."""

    def __init__(self, width: int, hidden: int, dim: int, n_tasks: int, n_subtasks: int, dropout: float):
        super().__init__()
        self.n_tasks = n_tasks
        self.classifier = nn.Sequential(
            nn.LayerNorm(width),
            nn.Dropout(dropout),
            nn.Linear(width, 2 * hidden),
            nn.GELU(),
            nn.Linear(2 * hidden, n_tasks + n_subtasks),
        )
        # zeros: every prompt starts at u = 0, i.e. the prior router given by the model biases
        self.task_vectors = nn.Parameter(torch.zeros(n_tasks, dim))
        self.subtask_vectors = nn.Parameter(torch.zeros(n_subtasks, dim))

    def logits(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(task logits [B, n_tasks], subtask logits [B, n_subtasks])."""
        out = self.classifier(pooled)
        return out[:, : self.n_tasks], out[:, self.n_tasks :]

    def mix(self, task_logits: torch.Tensor, subtask_logits: torch.Tensor) -> torch.Tensor:
        u = torch.softmax(task_logits, dim=-1) @ self.task_vectors
        if self.subtask_vectors.shape[0]:
            u = u + torch.softmax(subtask_logits, dim=-1) @ self.subtask_vectors
        return u


def truncate_backbone(backbone, layers: int | None) -> int:
    """Drop the backbone's transformer layers above the first `layers` (in place); its layer count after.

    Why: the encoder is nearly all of a prediction's cost, and what the quality model reads from
    a prompt (mostly which task it is, see TaskMixture) may not need every layer. A truncated
    backbone is still the packaged MiniLM, only shallower; its artifact records the depth so
    loading cuts the fresh backbone the same way.
    """
    total = backbone.config.num_hidden_layers
    if layers is None or layers == total:
        return total
    if not 1 <= layers <= total:
        raise ValueError(f"backbone_layers must be in [1, {total}], got {layers}")
    backbone.encoder.layer = nn.ModuleList(list(backbone.encoder.layer)[:layers])
    backbone.config.num_hidden_layers = layers
    return layers


class QualityModel(nn.Module):
    """Backbone (frozen stem + LoRA top) -> prompt head -> bilinear scores against model vectors."""

    def __init__(self, backbone, n_models: int, config: ModelConfig, lora: bool = True):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.config = config
        n_layers = truncate_backbone(backbone, config.backbone_layers)
        if not 0 <= config.lora_layers <= n_layers:
            raise ValueError(f"lora_layers must be in [0, {n_layers}], got {config.lora_layers}")
        self.split = n_layers - config.lora_layers
        for param in backbone.parameters():
            param.requires_grad = False
        if lora and config.lora_layers > 0:
            lora_config = LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=LORA_TARGETS,
                layers_to_transform=list(range(self.split, n_layers)),
                layers_pattern="layer",
            )
            self.encoder = get_peft_model(backbone, lora_config)
        else:
            self.encoder = backbone
        width = backbone.config.hidden_size
        if config.uses_tasks:
            self.tasks = TaskMixture(width, config.hidden, config.dim, config.n_tasks, config.n_subtasks, config.dropout)
        else:
            self.head = PromptHead(width, config.hidden, config.dim, config.dropout)
        self.model_vectors = nn.Parameter(torch.randn(n_models, config.dim) * 0.1)
        self.model_bias = nn.Parameter(torch.zeros(n_models))

    @property
    def bert(self):
        """The underlying BertModel (LoRA modules, if any, are injected into its top layers)."""
        encoder = self.encoder
        return encoder.base_model.model if hasattr(encoder, "base_model") and hasattr(encoder, "peft_config") else encoder

    def _mask(self, hidden: torch.Tensor, mask: torch.Tensor):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.bert.config, inputs_embeds=hidden, attention_mask=mask)

    def stem(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states entering the first LoRA layer. Frozen: training caches these."""
        bert = self.bert
        hidden = bert.embeddings(input_ids=input_ids)
        ext = self._mask(hidden, mask)
        for layer in bert.encoder.layer[: self.split]:
            hidden = layer(hidden, ext)
        return hidden

    def top(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The tuned layers and mean pooling: stem output -> sentence embedding."""
        ext = self._mask(hidden, mask)
        for layer in self.bert.encoder.layer[self.split :]:
            hidden = layer(hidden, ext)
        return mean_pool(hidden, mask)

    def prompt_outputs(self, pooled: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """(u, (task logits, subtask logits)) — the logits are None without tasks. Training needs both."""
        if not self.config.uses_tasks:
            return self.head(pooled), None
        logits = self.tasks.logits(pooled)
        return self.tasks.mix(*logits), logits

    def prompt_vectors(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.prompt_outputs(pooled)[0]

    def head_state(self) -> dict[str, torch.Tensor]:
        """Every trained tensor outside the encoder (heads, task and model vectors): what an artifact stores."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def scores(self, u: torch.Tensor, vectors: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, M] for prompt vectors u against model vectors (the trained ones by default)."""
        vectors = self.model_vectors if vectors is None else vectors
        bias = self.model_bias if bias is None else bias
        return u @ vectors.T + bias

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            hidden = self.stem(input_ids, mask)
        return self.scores(self.prompt_vectors(self.top(hidden, mask)))
