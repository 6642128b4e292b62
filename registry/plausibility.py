"""Warnings for registry entries that are valid but probably mistaken (they are not errors: a free
model is real, and so may be a price no one has seen yet)."""
from __future__ import annotations

import re

from pickwise.registry.schema import BASE_MODEL_TAG, ModelSpec

# a non-zero price per million tokens below this is almost surely a per-token price typed into a
# per-million field ($0.30 per million is $3e-07 per token)
MIN_PLAUSIBLE_PER_MILLION = 0.001


def price_warnings(spec: ModelSpec) -> list[str]:
    """One line per price field of `spec` that looks like a per-token price."""
    out = []
    for field in ("input_per_million", "output_per_million"):
        price = getattr(spec.pricing, field)
        if 0 < price < MIN_PLAUSIBLE_PER_MILLION:
            out.append(f"model '{spec.name}': pricing.{field} {price:g} is below ${MIN_PLAUSIBLE_PER_MILLION:g} per "
                       f"million tokens; prices are per million tokens (a per-token price of ${price:g} is "
                       f"${price * 1e6:g} per million)")
    return out


def tag_warnings(spec: ModelSpec) -> list[str]:
    """One line per tag that is spelled like BASE_MODEL_TAG but is not it: tags are matched exactly, so
    `Base-Model` or `base_model` leaves a pretrained-only model routed open-ended prompts."""
    return [f"model '{spec.name}': tag '{tag}' is not '{BASE_MODEL_TAG}' (tags are matched exactly), so the model "
            "is treated as instruction-tuned; write it as shown to mark a pretrained-only model"
            for tag in spec.tags
            if tag != BASE_MODEL_TAG and re.sub(r"[\s_]+", "-", tag.strip().lower()) == BASE_MODEL_TAG]


def entry_warnings(spec: ModelSpec) -> list[str]:
    """Every warning above for one model: what `models add` and `models validate` print."""
    return price_warnings(spec) + tag_warnings(spec)
