# Sourced by the other scripts (and by you, before running cargo by hand): points tch's build
# at the libtorch of the `torch` wheel in the project's virtual environment. The built binaries
# need none of this: they find the project's tools themselves (see README, Install).
secvec_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$secvec_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
