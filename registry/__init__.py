"""The YAML model registry: model specs, validated snapshots, atomic writes, cost/latency estimates.

Depends on nothing else in pickwise; predictor, selector and api build on it.
"""
from pickwise.registry.errors import NameTakenError, RegistryConflict, RegistryError, RegistryIssue, UnknownModelError
from pickwise.registry.estimates import estimate_cost_usd, estimate_latency_ms, fits_context, output_room
from pickwise.registry.loader import default_registry_dir, load_registry, pickwise_home, user_registry_dir
from pickwise.registry.schema import Endpoint, Latency, ModelSpec, Pricing, Probe, ProbeResult
from pickwise.registry.snapshot import RegistrySnapshot
from pickwise.registry.store import Registry
from pickwise.registry.tokens import TOKENIZER_NAME, count_tokens, count_tokens_batch

__all__ = [
    "Endpoint", "Latency", "ModelSpec", "Pricing", "Probe", "ProbeResult",
    "NameTakenError", "Registry", "RegistryConflict", "RegistryError", "RegistryIssue", "RegistrySnapshot", "UnknownModelError",
    "TOKENIZER_NAME", "count_tokens", "count_tokens_batch",
    "default_registry_dir", "estimate_cost_usd", "pickwise_home", "user_registry_dir", "estimate_latency_ms", "fits_context", "load_registry", "output_room",
]
