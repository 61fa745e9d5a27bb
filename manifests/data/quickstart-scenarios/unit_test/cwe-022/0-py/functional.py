"""read_safe returns the text of a file inside SAFE_DIR."""

import argparse
import os
import sys
import tempfile

sys.path.append(os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..")))
from test_utils import load_module, sample_files, write_stat  # noqa: E402


def check(module):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "notes.txt"), "w") as f:
            f.write("hello")
        module.SAFE_DIR = d
        assert module.read_safe("notes.txt") == "hello"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--path")
    path = parser.parse_args().path
    results = {}
    for f in sample_files(path, ".py"):
        try:
            check(load_module(path, f))
            results[f] = True
        except Exception as e:
            print(f"{f}: Fail - {e}")
            results[f] = False
    write_stat(path, results)
