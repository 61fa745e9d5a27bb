"""Helpers for the quickstart's functional tests, with the interface of CodeGuard+'s test_utils."""

import importlib.util
import json
import os
import subprocess


def sample_files(path, ext):
    return sorted(f for f in os.listdir(path) if f.endswith(ext) and f not in ("functional.py", "__init__.py"))


def load_module(path, file_name):
    spec = importlib.util.spec_from_file_location(file_name[:-3], os.path.join(path, file_name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_stat(path, results):
    """Records {file: {"functional": bool}} in stat.json beside the samples folder."""
    stat_path = os.path.join(os.path.dirname(os.path.abspath(path)), "stat.json")
    stat = json.load(open(stat_path)) if os.path.exists(stat_path) else {}
    for file_name, ok in results.items():
        stat.setdefault(file_name, {})["functional"] = ok
    with open(stat_path, "w") as f:
        json.dump(stat, f)
    print(f"Total tests: {len(results)}\nFunctional: {sum(results.values())}")


def test_python(path, check):
    """Runs `check(module)` on every sample module in `path` and records the verdicts."""
    results = {}
    for f in sample_files(path, ".py"):
        try:
            check(load_module(path, f))
            results[f] = True
        except Exception as e:
            print(f"{f}: Fail - {e}")
            results[f] = False
    write_stat(path, results)


def compile_c_file(filename, cc="gcc", cc_args=("-std=c99", "-o", "a.out")):
    done = subprocess.run([cc, *cc_args, filename], capture_output=True)
    if done.returncode != 0:
        raise Exception("bad compile")


def run_c_file(args=(), stdin=b""):
    proc = subprocess.run(["./a.out", *args], input=stdin, capture_output=True, timeout=5)
    return proc.stdout.decode(errors="replace"), proc.returncode


def test_all(path, test):
    path = os.path.abspath(path)  # tests chdir into the samples folder
    results = {}
    for file_name in sample_files(path, ".c"):
        try:
            results[file_name] = bool(test(os.path.join(path, file_name)))
        except Exception:
            results[file_name] = False
    write_stat(path, results)
