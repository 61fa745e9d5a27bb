import os

SAFE_DIR = "/srv/safe"

