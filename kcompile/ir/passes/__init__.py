"""Graph -> Graph passes and the ordered pipeline that runs them (see pipeline.py)."""
