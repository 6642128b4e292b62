"""Integer programs that turn predicted qualities, costs and latencies into routing decisions."""
