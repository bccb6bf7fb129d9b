"""promoter: moves ML models from training to production only when they have earned it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("promoter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
