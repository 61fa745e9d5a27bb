# Sourced by the other scripts (and by you, before running cargo by hand): points tch's build
# at the libtorch of the `torch` wheel in the project's virtual environment.
secvec_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$secvec_root/.venv"
# The security oracles (bandit, semgrep) live in their own environment: semgrep pins versions
# of common packages that transformers also needs.
export PATH="$VIRTUAL_ENV/bin:$secvec_root/.venv-oracles/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
