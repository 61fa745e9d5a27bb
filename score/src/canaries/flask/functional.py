"""A Flask test-client request, as the CWE-079/CWE-022 tests make them."""

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
                module.app.testing = True
                # The test client reads werkzeug's package metadata on its first request.
                response = module.app.test_client().get("/hello?name=canary")
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.get_json(), {"greeting": "hello canary"})
                TestWrapper.results.append((module_name, "Pass", 1))
            except Exception as e:
                TestWrapper.results.append((module_name, "Fail", 0, f"{type(e).__name__}: {e}"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--path")
    suite = unittest.TestSuite([TestWrapper("test_modules", parser.parse_args().path)])
    unittest.TextTestRunner().run(suite)
