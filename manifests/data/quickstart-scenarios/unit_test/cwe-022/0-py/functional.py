"""read_safe returns the text of a file inside SAFE_DIR."""

import argparse
import importlib.util
import os
import sys
import tempfile
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
                with tempfile.TemporaryDirectory() as d:
                    with open(os.path.join(d, "notes.txt"), "w") as f:
                        f.write("hello")
                    module.SAFE_DIR = d
                    self.assertEqual(module.read_safe("notes.txt"), "hello")
                TestWrapper.results.append((module_name, "Pass", 1))
            except Exception as e:
                TestWrapper.results.append((module_name, "Fail", 0, str(e)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--path")
    suite = unittest.TestSuite([TestWrapper("test_modules", parser.parse_args().path)])
    unittest.TextTestRunner().run(suite)
