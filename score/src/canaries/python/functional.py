"""Plain Python: the program's module, and modules loaded only once the test runs."""

import argparse
import importlib.util
import os
import sys
import unittest

sys.path.append(os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..")))
from test_utils import TestCase  # noqa: E402


class TestWrapper(TestCase):
    def test_modules(self):
        for module_name in self.module_names:
            try:
                spec = importlib.util.spec_from_file_location(module_name, os.path.join(self.base_file_path, f"{module_name}.py"))
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                # Loaded late: a C extension of the standard library, and a package of the venv.
                import sqlite3
                from importlib import metadata

                import yaml

                db = sqlite3.connect(":memory:")
                db.execute("create table t (x text)")
                db.execute("insert into t values (?)", (module.digest("canary"),))
                self.assertEqual(db.execute("select x from t").fetchone()[0], module.digest("canary"))
                self.assertEqual(yaml.safe_load("a: 1"), {"a": 1})
                self.assertTrue(metadata.version("pyyaml"))
                TestWrapper.results.append((module_name, "Pass", 1))
            except Exception as e:
                TestWrapper.results.append((module_name, "Fail", 0, f"{type(e).__name__}: {e}"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--path")
    suite = unittest.TestSuite([TestWrapper("test_modules", parser.parse_args().path)])
    unittest.TextTestRunner().run(suite)
