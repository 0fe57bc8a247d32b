"""The `kcompile` command line."""
from __future__ import annotations

import argparse
import sys

from ._version import __version__
from .codegen.target import TARGETS


def _demo(args):
    from .demo import run_demo
    run_demo(epochs=args.epochs, samples=args.samples, seed=args.seed, save_to=args.save_to or None,
             build_to=args.build_to or None)
    return 0


def _inspect(args):
    from .inspect_model import inspect_file
    status, text = inspect_file(args.model, show_ir=not args.no_ir)
    print(text, end="")
    return status


def _target_name(text):
    """--target: host, a TARGETS name, or nvptx-sm_NN (one GPU compute capability)."""
    import re
    if text in ["host"] + sorted(TARGETS) or re.fullmatch(r"nvptx-sm_\d+a?", text):
        return text
    raise argparse.ArgumentTypeError(f"invalid target {text!r} (choose from host, {', '.join(sorted(TARGETS))}, "
                                     "nvptx-sm_NN)")


def _build(args):
    from .aot import build, c_identifier
    from .saving.api import load_model
    from .saving.model_build import UnsupportedModelError
    entries = [e.strip() for e in args.entries.split(",") if e.strip()] if args.entries else None
    try:
        model = load_model(args.model)
        if args.weights_from is not None:
            model.load_weights(args.weights_from)
    except UnsupportedModelError as exc:
        print(f"kcompile: {args.model} uses what kcompile cannot compile:\n{exc}", file=sys.stderr)
        return 1
    try:
        manifest = build(model, args.output, name=args.name, target=args.target, entries=entries,
                         weights=args.weights, data_parallel=args.data_parallel)
    except NotImplementedError as exc:     # the GPU path's UnsupportedKernels: every kernel it lacks
        print(f"kcompile: {args.model} cannot be built for {args.target}:\n{exc}", file=sys.stderr)
        return 1
    name = c_identifier(manifest.name)
    if manifest.abi.get("device") == "cuda":
        print(f"wrote {args.output}/: {name}.ptx {name}.h {name}_cuda.h {name}.o lib{name}.so {name}_host.c "
              f"{name}_manifest.json {name}_launches.json (entries: {', '.join(manifest.entries)}; device pointers)")
        return 0
    print(f"wrote {args.output}/: {name}.h {name}.o" + (" lib" + name + ".so" if "predict" in manifest.abi else "")
          + f" {name}_manifest.json example.c Makefile (entries: {', '.join(manifest.entries)})")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kcompile", description="Compile Keras models to native code.")
    parser.add_argument("--version", action="version", version=f"kcompile {__version__}")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="build the Keras guide's MLP, compile it to native code, train, "
                                       "evaluate and predict on a synthetic task, save and reload it, and "
                                       "export it as a C library")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    demo.add_argument("--samples", type=int, default=2000, help="training samples (default 2000)")
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument("--save-to", default="kcompile_demo.keras",
                      help="save the trained model here (.keras or .h5) and reload it; '' to skip "
                           "(default kcompile_demo.keras)")
    demo.add_argument("--build-to", default="kcompile_demo_lib",
                      help="also export the trained model as a C library here (kcompile build); '' to skip "
                           "(default kcompile_demo_lib)")
    demo.set_defaults(func=_demo)
    inspect = sub.add_parser("inspect", help="show a saved model (.keras, .h5, .json, .yaml): its summary, the IR "
                                             "after the optimisation passes, and any unsupported features")
    inspect.add_argument("model", help="path of the model file")
    inspect.add_argument("--no-ir", action="store_true", help="print only the summary and the support check")
    inspect.set_defaults(func=_inspect)
    build = sub.add_parser("build", help="compile a saved model ahead of time into a C library (object file, "
                                         "shared library, header, manifest, example program)",
                           description="Exit status: 0 on success, 1 when the model uses something kcompile "
                                       "does not support (all of it is listed), 2 on a usage error.")
    build.add_argument("model", help="the model file: .keras, .h5, or .json/.yaml (with --weights-from)")
    build.add_argument("-o", "--output", required=True, help="the folder to write")
    build.add_argument("--name", help="prefix of every C symbol (default: the model's name)")
    build.add_argument("--target", default="host", type=_target_name,
                       help="the machine to generate code for (default: this one): "
                            + ", ".join(["host"] + sorted(TARGETS)) + ", or nvptx-sm_NN (a GPU library: "
                            "NAME.ptx and a host library launching it through the CUDA driver)")
    build.add_argument("--entries", help="comma-separated subset of predict,train,evaluate (default: every entry "
                                         "the model supports: train and evaluate need a compiled model)")
    build.add_argument("--weights", choices=["embedded", "file"], default="embedded",
                       help="embed the initial state in the library (default) or write it to NAME.state")
    build.add_argument("--weights-from", metavar="FILE", help="load weights from FILE (.weights.h5 or .h5) first")
    build.add_argument("--data-parallel", action="store_true",
                       help="the train step sums its gradients over replicas through the function the C program "
                            "sets with NAME_set_allreduce (e.g. one calling MPI_Allreduce; see kcompile.h)")
    build.set_defaults(func=_build)
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
