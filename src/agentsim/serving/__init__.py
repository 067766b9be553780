"""The serving side: replicas (continuous-batching engines), their KV caches, routers and the cluster."""
