"""The IR: graphs of primitives (graph.py), their rule table (primitives.py), builders and passes."""
from . import scan  # noqa: F401  (registers the scan primitive)
