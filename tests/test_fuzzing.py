"""Fuzzing as a habit: the model-config readers under atheris for a bounded run, and every input
kept in tests/fuzz/regressions replayed. Longer runs by hand: see tests/fuzz/fuzz_model_configs.py."""
import pathlib
import shutil
import subprocess
import sys

import pytest

FUZZ = pathlib.Path(__file__).parent / "fuzz"
HARNESS = FUZZ / "fuzz_model_configs.py"


def _have_atheris():
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _have_atheris(), reason="atheris is not installed (pip install -e '.[test]' on Linux x86-64)")
def test_bounded_fuzz_run_of_the_config_readers(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "corpus", corpus)      # the fuzzer adds to its corpus: keep the seeds clean
    done = subprocess.run([sys.executable, str(HARNESS), "-runs=500", "-seed=1", "-timeout=20",
                           f"-artifact_prefix={tmp_path}/", str(corpus)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:] + "\ncrash inputs: " + str(list(tmp_path.glob("crash-*")))
    assert "Done 500 runs" in done.stderr


@pytest.mark.parametrize("path", sorted((FUZZ / "regressions").iterdir()), ids=lambda p: p.name)
def test_regression_inputs_end_in_a_clear_error(path):
    """Each kept input must give a model or a ValueError naming the problem, never anything else."""
    replay = ("import importlib.util, sys\n"
              f"spec = importlib.util.spec_from_file_location('harness', {str(HARNESS)!r})\n"
              "harness = importlib.util.module_from_spec(spec); spec.loader.exec_module(harness)\n"
              f"harness.one_input(open({str(path)!r}, 'rb').read())\n")
    done = subprocess.run([sys.executable, "-c", replay], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
