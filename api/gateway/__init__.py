"""The OpenAI-compatible gateway's transport-free parts: the pooled upstream client, forwarding with
fallback, and the prompt the predictor reads of a conversation. The HTTP routes
(`pickwise.api.http.gateway`) and `pickwise probe run` both build on them."""
from pickwise.api.errors import AllAttemptsFailed, GatewayBusy, ModelNotServed
from pickwise.api.gateway.forward import Attempt, Forwarded, Forwarder, Observer, upstream_body
from pickwise.api.gateway.prompt import routing_prompt
from pickwise.api.gateway.upstream import (
    UpstreamClient,
    UpstreamError,
    UpstreamReply,
    UpstreamStream,
)

__all__ = [
    "AllAttemptsFailed", "Attempt", "Forwarded", "Forwarder", "GatewayBusy", "Observer", "ModelNotServed", "UpstreamClient",
    "UpstreamError", "UpstreamReply", "UpstreamStream", "routing_prompt", "upstream_body",
]
