"""The environment variables the service reads, named once: `http.settings` reads them (pydantic-settings,
prefix PICKWISE_) and messages anywhere in the api quote them."""
from __future__ import annotations

ENV_PREFIX = "PICKWISE_"
ADMIN_TOKEN_ENV = ENV_PREFIX + "ADMIN_TOKEN"
API_KEYS_ENV = ENV_PREFIX + "API_KEYS"
FEEDBACK_TOKEN_ENV = ENV_PREFIX + "FEEDBACK_TOKEN"
GATEWAY_DEFAULTS_ENV = ENV_PREFIX + "GATEWAY_DEFAULTS"
GATEWAY_LIMITS_ENV = ENV_PREFIX + "GATEWAY_LIMITS"
