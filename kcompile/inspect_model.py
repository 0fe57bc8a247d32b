"""`kcompile inspect MODEL`: what kcompile makes of a saved model, without running it.

Prints the summary, the inference graph after the optimisation passes and its kernel list, or
— when the file uses layers or arguments kcompile does not support — the full list of them.
"""
from __future__ import annotations

import io


def inspect_file(path, show_ir=True, custom_objects=None):
    """(exit status, report text) for a .keras, .h5, .json or .yaml model file."""
    from .ir.passes.pipeline import lower_to_kernels, optimize_graph
    from .ir.printer import format_graph
    from .saving.api import load_model
    from .saving.model_build import UnsupportedModelError
    out = io.StringIO()
    try:
        model = load_model(path, custom_objects=custom_objects, compile=False)
    except UnsupportedModelError as exc:
        out.write(f"{exc}\n")
        return 1, out.getvalue()
    model.summary(print_fn=lambda line: out.write(line + "\n"))
    if show_ir:
        graph = _predict_graph(model)
        out.write("\n" + format_graph(optimize_graph(graph), "inference graph after passes"))
        out.write("\n" + lower_to_kernels(graph).describe())
    out.write("\nunsupported features: none\n")
    return 0, out.getvalue()


def _predict_graph(model):
    from .models.compiled import CompiledModel, TrainingSpec
    specs = model._known_input_specs()
    if specs is None or any(d is None for _, shape, _ in specs for d in shape[1:]):
        raise ValueError("the model's input sizes are not all known, so its graph depends on the data")
    names = model._output_names_list()
    spec = TrainingSpec([None] * len(names), [1.0] * len(names), [[] for _ in names], [[] for _ in names], names)
    return CompiledModel(model, specs, spec).predict_graph()
