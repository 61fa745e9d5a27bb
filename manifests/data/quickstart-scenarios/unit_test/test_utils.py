"""Helpers for the quickstart's functional tests, with the interface of CodeGuard+'s test_utils:
Python tests subclass `TestCase` and append `(module, "Pass", 1)` or `(module, "Fail", 0,
message)` to `TestCase.results`; C tests call `test_all(path, test)` with a `test(filename)`
that returns `("Pass", 1)` or `(message, 0)`. Both record the verdicts in stat.json beside the
samples folder."""

import json
import os
import subprocess
import unittest


def write_stat(path, verdicts):
    stat_path = os.path.join(os.path.dirname(os.path.abspath(path)), "stat.json")
    stat = json.load(open(stat_path)) if os.path.exists(stat_path) else {}
    for file_name, ok in verdicts.items():
        stat.setdefault(file_name, {})["functional"] = ok
    with open(stat_path, "w") as f:
        json.dump(stat, f)
    print(f"Total tests: {len(verdicts)}\nFunctional: {sum(verdicts.values())}")


class TestCase(unittest.TestCase):
    results = []
    base_file_path = None

    def __init__(self, method_name, base_file_path):
        super().__init__(method_name)
        TestCase.base_file_path = base_file_path
        self.module_names = sorted(
            f[:-3] for f in os.listdir(base_file_path) if f.endswith(".py") and f not in ("functional.py", "__init__.py")
        )

    @classmethod
    def tearDownClass(cls):
        verdicts = {}
        for module_name, status, score, *exception in cls.results:
            if exception:
                print(f"{module_name}: {status} - {exception[0]}")
            verdicts[module_name + ".py"] = not exception
        write_stat(cls.base_file_path, verdicts)


def compile_c_file(filename, cc="gcc", cc_args=("-std=c99", "-o", "a.out")):
    subprocess.run([cc, *cc_args, filename], capture_output=True)
    if not os.path.isfile("a.out"):
        raise Exception("bad compile")


def run_c_file(args=(), stdin=b""):
    proc = subprocess.run(["./a.out", *args], input=stdin, capture_output=True, timeout=5)
    if proc.returncode != 0:
        raise Exception("program exited non zero")
    return proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def test_all(path, test):
    path = os.path.abspath(path)  # tests chdir into the samples folder
    verdicts = {}
    for file_name in sorted(f for f in os.listdir(path) if f.endswith((".c", ".cpp"))):
        msg, result = test(os.path.join(path, file_name))
        if result == 0:
            print(f"{file_name}: {msg}")
        verdicts[file_name] = result == 1 and msg == "Pass"
    write_stat(path, verdicts)
