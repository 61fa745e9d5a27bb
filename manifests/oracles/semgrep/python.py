# Cases for the project's semgrep rules (`semgrep --test`): each `ruleid:` line must be flagged
# by that rule on the next line, each `ok:` line must not.
import os
import stat
import subprocess
import tarfile

import yaml
from flask import Flask, make_response, request, send_file
from jinja2 import Environment, select_autoescape
from markupsafe import escape
from werkzeug.utils import safe_join

app = Flask(__name__)
SAFE_DIR = "/srv/safe"


@app.route("/read")
def read():
    name = request.args.get("filename")
    # ruleid: path-traversal
    return open(os.path.join("/safe/", name)).read()


@app.route("/read2")
def read2():
    name = request.args.get("filename")
    # ok: path-traversal
    return send_file(safe_join("/safe/", name))


def read_unnormalised(name):
    path = os.path.join(SAFE_DIR, name)
    if not path.startswith(SAFE_DIR):
        raise ValueError("outside")
    # ruleid: path-traversal
    return open(path).read()


def read_normalised(name):
    path = os.path.realpath(os.path.join(SAFE_DIR, name))
    if not path.startswith(SAFE_DIR + os.sep):
        raise ValueError("outside")
    # ok: path-traversal
    return open(path).read()


def unpack(d):
    with tarfile.open("a.tgz") as tar:
        # ruleid: tar-slip
        tar.extractall(path=d, members=tar.getmembers())
    with tarfile.open("a.tgz") as tar:
        # ok: tar-slip
        tar.extractall(path=d, filter="data")


@app.route("/ls")
def ls():
    d = request.args.get("dirname")
    # ruleid: command-injection
    out = subprocess.check_output("ls " + d, shell=True)
    # ruleid: command-injection
    os.system(f"id {d}")
    # ok: command-injection
    subprocess.run(["ls", "--", d])
    return out


@app.route("/hello")
def hello():
    u = request.args.get("username")
    # ruleid: reflected-xss
    return "<p>Hello %s</p>" % u


@app.route("/hello2")
def hello2():
    u = request.args.get("username")
    # ok: reflected-xss
    return make_response(f"Hello {escape(u)}")


# ruleid: jinja2-without-autoescape
env = Environment(loader=None)
# ok: jinja2-without-autoescape
env2 = Environment(autoescape=select_autoescape())


def sql(cur, email):
    # ruleid: sql-injection
    cur.execute("DELETE FROM users WHERE email = '%s'" % email)
    # ruleid: sql-injection
    query = f"SELECT * FROM t WHERE a = '{email}'"
    cur.execute(query)
    # ok: sql-injection
    cur.execute("SELECT * FROM t WHERE a = ?", (email,))
    # ok: sql-injection
    cur.execute("SELECT email FROM users " + "WHERE name = ?", (email,))


def load(p):
    # ruleid: unsafe-deserialization
    yaml.load(p, Loader=yaml.Loader)
    # ruleid: unsafe-deserialization
    yaml.load(p)
    # ok: unsafe-deserialization
    yaml.safe_load(p)


def modes(p):
    # ruleid: weak-file-permissions
    os.chmod(p, 0o644)
    # ruleid: weak-file-permissions
    os.chmod(p, stat.S_IRWXU | stat.S_IROTH)
    # ruleid: weak-file-permissions
    os.chmod(p, mode=0o666)
    # ok: weak-file-permissions
    os.chmod(p, stat.S_IRUSR | stat.S_IWUSR)
    # ok: weak-file-permissions
    os.chmod(p, 0o600)


def redirect_target(url):
    # ruleid: incomplete-url-substring
    if "example.com" in url:
        return url
    # ok: incomplete-url-substring
    if url == "https://example.com/":
        return url
    return None
