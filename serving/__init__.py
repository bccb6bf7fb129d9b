"""The inference server that Argo Rollouts runs blue/green: model, protocols, batching, metrics."""
