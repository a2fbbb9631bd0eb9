# Fresh machine: `make demo` and `make test` each create .venv and install what they need.
# `make demo` installs only what the demo uses (the `camera` and `audit` extras); `make test` the full dev set.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP  := $(VENV)/.installed-dev

.PHONY: install install-demo test lint demo demo-full demo-detection demo-detection-synthetic demo-lidar bench sysdeps clean

# open3d (the `lidar` extra) needs Debian's libusb-1.0-0 to import; install it when missing.
sysdeps:
	@bash scripts/install_system_deps.sh

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(DEMO_STAMP): setup.cfg pyproject.toml constraints-dev.txt | $(PY)
	@bash scripts/install_system_deps.sh demo
	$(PIP) install -q -c constraints-dev.txt -e ".[camera,audit]"
	touch $(DEMO_STAMP)

$(DEV_STAMP): setup.cfg pyproject.toml constraints-dev.txt | $(PY)
	@$(MAKE) --no-print-directory sysdeps
	$(PIP) install -q -c constraints-dev.txt -e ".[dev,torch,camera,lidar]"
	# TorchCP is a test-only peer. Its own dependency list pulls torchvision, transformers, torch_geometric
	# and a torchsort C++ build, none of which its classification scores use; see tests/_peers.py.
	$(PIP) install -q --no-deps -c constraints-dev.txt torchcp==1.2.1
	touch $(DEV_STAMP) $(DEMO_STAMP)

install-demo: $(DEMO_STAMP)
install: $(DEV_STAMP)

lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache

# The suite in TEST_WORKERS processes (pytest-xdist; the machine this targets has 2 cores): 1,488 tests in
# ~11 min with a cold Numba cache on 2 AMD EPYC cores, ~15 min in one process. TEST_WORKERS=0 runs one process.
TEST_WORKERS ?= 2
test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS)

# The default audit: real scikit-learn digits, corruptions x severities, plots and report.html (~20 s).
demo: $(DEMO_STAMP)
	$(PY) -m audit run configs/digits_camera.yaml --out audit-out/digits
	$(PY) -m audit report audit-out/digits --png
	@echo "report: audit-out/digits/report.html"

# The larger audit on real Fashion-MNIST with the reference CNN.
demo-full: $(DEV_STAMP)
	$(PY) -m audit run configs/fashion_mnist_camera.yaml --out audit-out/fashion_mnist --workers 2
	$(PY) -m audit report audit-out/fashion_mnist --png

# Conformal object detection on camera images: the shipped scenes_detector on composite scenes (real objects and
# photographs), 8 image corruptions x 5 severities applied to the images, the detector re-run per cell.
demo-detection: $(DEV_STAMP)
	$(PY) -m audit run configs/camera_detection.yaml --out audit-out/camera_detection --workers 2
	$(PY) -m audit report audit-out/camera_detection --png
	@echo "report: audit-out/camera_detection/report.html"

# Conformal object detection under simulated detector degradations (SYNTHETIC scenes and detector, ~35 s).
demo-detection-synthetic: $(DEV_STAMP)
	$(PY) -m audit run configs/detection_synthetic.yaml --out audit-out/detection
	$(PY) -m audit report audit-out/detection --png
	@echo "report: audit-out/detection/report.html"

# LiDAR: SYNTHETIC ray-cast scans, the nine scene corruptions applied before the reference BEV 3D detector.
demo-lidar: $(DEV_STAMP)
	$(PY) -m audit run configs/lidar_detection.yaml --out audit-out/lidar --workers 2
	$(PY) -m audit report audit-out/lidar --png
	@echo "report: audit-out/lidar/report.html"

bench: $(DEV_STAMP)
	# Benchmark-only peers (e.g. imagecorruptions) are installed by benchmarks/install_*.sh, never by `make test`.
	for s in benchmarks/install_*.sh; do [ ! -e "$$s" ] || bash "$$s" "$(PY)" || exit 1; done
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
