"""read_safe returns the text of a file inside SAFE_DIR."""

import argparse
import os
import sys
import tempfile

sys.path.append(os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..")))
from test_utils import test_python  # noqa: E402


def check(module):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "notes.txt"), "w") as f:
            f.write("hello")
        module.SAFE_DIR = d
        assert module.read_safe("notes.txt") == "hello"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--path")
    test_python(parser.parse_args().path, check)
