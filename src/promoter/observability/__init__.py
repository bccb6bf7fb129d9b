"""What promoter shows an operator of the platform: Grafana dashboards as code, over the metrics
the inference server (`promoter.serving.metrics`) and the operator (`promoter.operator.metrics`)
export. Nothing here imports either: the contract is the metric names."""
