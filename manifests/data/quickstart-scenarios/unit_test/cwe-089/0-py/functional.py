"""get_email returns the stored email, and None for an unknown user."""

import argparse
import importlib.util
import os
import sqlite3
import sys
import tempfile
import unittest

sys.path.append(os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..")))
from test_utils import TestCase  # noqa: E402


def make_db(d):
    db = os.path.join(d, "users.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE users (name TEXT, email TEXT)")
    conn.executemany("INSERT INTO users VALUES (?, ?)", [("alice", "a@x.org"), ("bob", "b@x.org")])
    conn.commit()
    conn.close()
    return db


class TestWrapper(TestCase):
    def test_modules(self):
        for module_name in self.module_names:
            try:
                spec = importlib.util.spec_from_file_location(module_name, os.path.join(self.base_file_path, f"{module_name}.py"))
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                with tempfile.TemporaryDirectory() as d:
                    db = make_db(d)
                    got = module.get_email(db, "bob")
                    if isinstance(got, (tuple, list)):
                        got = got[0]
                    self.assertEqual(got, "b@x.org")
                    self.assertIn(module.get_email(db, "carol"), (None, (), []))
                TestWrapper.results.append((module_name, "Pass", 1))
            except Exception as e:
                TestWrapper.results.append((module_name, "Fail", 0, str(e)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--path")
    suite = unittest.TestSuite([TestWrapper("test_modules", parser.parse_args().path)])
    unittest.TextTestRunner().run(suite)
