"""The Keras guide's MLP with `import kcompile as keras`: compile to native code, train, evaluate,
predict. Run: python examples/mlp_demo.py"""
from kcompile.demo import run_demo

if __name__ == "__main__":
    run_demo()
