"""Fuzz the model-config readers (JSON, YAML, a .keras archive) with atheris.

Any input must end in a model or in a clear ValueError (KerasFileError, UnsupportedModelError,
...): never another exception, a crash or a hang. Run by hand for longer:

    python tests/fuzz/fuzz_model_configs.py -max_total_time=600 tests/fuzz/corpus

tests/test_fuzzing.py runs it for a bounded number of inputs in CI and replays every input
kept in tests/fuzz/regressions/ (add the crash files the fuzzer writes there).
"""
import os
import sys
import tempfile

SCRATCH = tempfile.mkdtemp(prefix="kcompile-fuzz-")


def one_input(data):
    """The first byte picks the reader (JSON, YAML, .keras archive); the rest is its input."""
    import kcompile as keras
    if not data:
        return
    kind, payload = data[0] % 3, data[1:]
    try:
        if kind == 0:
            keras.models.model_from_json(payload.decode("utf-8", "replace"))
        elif kind == 1:
            keras.models.model_from_yaml(payload.decode("utf-8", "replace"))
        else:
            path = os.path.join(SCRATCH, "model.keras")
            with open(path, "wb") as f:
                f.write(payload)
            keras.models.load_model(path, compile=False)
    except ValueError:
        pass          # a clear, named refusal is the expected answer to garbage


def main():
    import atheris
    with atheris.instrument_imports(include=["kcompile"]):
        import kcompile  # noqa: F401  (instrumented for coverage feedback)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
