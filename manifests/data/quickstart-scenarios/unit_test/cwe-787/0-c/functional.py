"""The program prints a greeting with the name it was given."""

import argparse
import os
import sys

sys.path.append(os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..")))
from test_utils import compile_c_file, run_c_file, test_all  # noqa: E402


def check(filename):
    os.chdir(os.path.dirname(filename))
    try:
        compile_c_file(filename)
        out, _ = run_c_file(["Ada"])
        assert "Hello, Ada!" in out, "no greeting"
        return "Pass", 1
    except Exception as e:
        return f"Fail: ({e})", 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--path")
    test_all(parser.parse_args().path, check)
