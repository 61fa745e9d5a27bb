"""A C compile and run, as CodeGuard+'s C tests do them."""

import argparse
import os
import sys

sys.path.append(os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..")))
from test_utils import compile_c_file, run_c_file, test_all  # noqa: E402


def perform_functional_test_of_file(filename):
    os.chdir(os.path.dirname(filename))
    try:
        compile_c_file(filename)
        output, _ = run_c_file(args=["12"])
        if output.strip() != "144":
            return f"Fail: (printed {output!r})", 0
        return "Pass", 1
    except Exception as e:
        return f"Fail: ({e})", 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--path")
    test_all(parser.parse_args().path, perform_functional_test_of_file)
