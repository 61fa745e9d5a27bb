def read_safe(name):
    """Return the text of the file called name inside SAFE_DIR."""
