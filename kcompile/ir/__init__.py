"""The IR: graphs of primitives (graph.py), their rule table (primitives.py), builders and passes."""
from . import primitives_collective, primitives_spatial, scan  # noqa: F401  (register the scan, window, gather and all-reduce primitives)
