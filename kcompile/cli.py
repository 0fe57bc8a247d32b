"""The `kcompile` command line."""
from __future__ import annotations

import argparse
import sys

from . import __version__


def _demo(args):
    from .demo import run_demo
    run_demo(epochs=args.epochs, samples=args.samples, seed=args.seed, save_to=args.save_to or None)
    return 0


def _inspect(args):
    from .inspect_model import inspect_file
    status, text = inspect_file(args.model, show_ir=not args.no_ir)
    print(text, end="")
    return status


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kcompile", description="Compile Keras models to native code.")
    parser.add_argument("--version", action="version", version=f"kcompile {__version__}")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="build the Keras guide's MLP, compile it to native code, train, "
                                       "evaluate and predict on a synthetic task, then save and reload it")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    demo.add_argument("--samples", type=int, default=2000, help="training samples (default 2000)")
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument("--save-to", default="kcompile_demo.keras",
                      help="save the trained model here (.keras or .h5) and reload it; '' to skip "
                           "(default kcompile_demo.keras)")
    demo.set_defaults(func=_demo)
    inspect = sub.add_parser("inspect", help="show a saved model (.keras, .h5, .json, .yaml): its summary, the IR "
                                             "after the optimisation passes, and any unsupported features")
    inspect.add_argument("model", help="path of the model file")
    inspect.add_argument("--no-ir", action="store_true", help="print only the summary and the support check")
    inspect.set_defaults(func=_inspect)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"kcompile: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
