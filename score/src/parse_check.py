"""secvec's parse check, run in the sandbox: one JSON job per stdin line ({"language",
"program"}), one answer per stdout line (true when the program parses). Python programs are
parsed by `ast` (nothing runs); C and C++ by gcc/g++ -fsyntax-only, each with a time limit."""

import ast
import json
import os
import signal
import subprocess
import sys

COMPILERS = {
    "c": ["gcc", "-std=c99", "-fsyntax-only", "-x", "c", "-"],
    "cpp": ["g++", "-fsyntax-only", "-x", "c++", "-"],
}

for line in sys.stdin:
    job = json.loads(line)
    if job["language"] == "py":
        try:
            ast.parse(job["program"])
            ok = True
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            ok = False
    else:
        compiler = subprocess.Popen(
            COMPILERS.get(job["language"], COMPILERS["c"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            compiler.communicate(job["program"].encode(), timeout=20)
            ok = compiler.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        finally:
            # gcc's own children (cc1) too, not only the driver.
            try:
                os.killpg(compiler.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            compiler.wait()
    print(json.dumps(ok), flush=True)
