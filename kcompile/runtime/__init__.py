"""The Python runtime: owns state and workspace memory and calls compiled entry points."""
