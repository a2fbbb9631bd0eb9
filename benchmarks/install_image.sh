#!/usr/bin/env bash
# Benchmark-only peer for bench_image_corruptions.py: the `imagecorruptions` PyPI release 1.1.2.
# Usage: bash benchmarks/install_image.sh /path/to/venv/bin/python   (`make bench` passes the venv python).
# It is installed with --no-deps because its metadata asks for opencv-python, which would clash with the
# opencv-python-headless we use. Its real run-time needs are numpy, numba, OpenCV (headless is fine), SciPy,
# Pillow, scikit-image and pkg_resources (setuptools), installed here explicitly.
set -euo pipefail
PY="${1:?usage: install_image.sh PYTHON}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONSTRAINTS="$HERE/../constraints-dev.txt"
PIP=("$PY" -m pip install -q)
[ -f "$CONSTRAINTS" ] && PIP+=(-c "$CONSTRAINTS")
if "$PY" -c "import imagecorruptions, skimage, scipy, PIL, pkg_resources" 2>/dev/null \
   && [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("imagecorruptions"))')" = "1.1.2" ]; then
    exit 0
fi
"${PIP[@]}" scipy Pillow scikit-image "setuptools<81" opencv-python-headless
"${PIP[@]}" --no-deps imagecorruptions==1.1.2
"$PY" -c "import imagecorruptions; print('imagecorruptions', imagecorruptions.__file__)"
