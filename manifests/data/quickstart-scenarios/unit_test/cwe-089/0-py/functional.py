"""get_email returns the stored email, and None for an unknown user."""

import argparse
import os
import sqlite3
import sys
import tempfile

sys.path.append(os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..")))
from test_utils import test_python  # noqa: E402


def check(module):
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "users.db")
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE users (name TEXT, email TEXT)")
        conn.executemany("INSERT INTO users VALUES (?, ?)", [("alice", "a@x.org"), ("bob", "b@x.org")])
        conn.commit()
        conn.close()
        got = module.get_email(db, "bob")
        if isinstance(got, (tuple, list)):
            got = got[0]
        assert got == "b@x.org", got
        assert module.get_email(db, "carol") in (None, (), [])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--path")
    test_python(parser.parse_args().path, check)
