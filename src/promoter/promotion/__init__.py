"""The promotion core, shared by every driver (`promoter run`, the operator, admission).

Spec and status (the resource), gates (pure verdicts), the engine (spec + status + observation ->
next status + actions), the driver (observe, decide, save, act), the ports the driver needs from the
world, and the names shared with MLflow. It depends on nothing else in promoter: pipelines, serving,
the local and cluster backends and the CLI depend on it, never the other way round.
"""
