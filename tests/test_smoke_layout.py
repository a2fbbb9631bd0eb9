import subprocess
import sys


def test_conformal_imports_without_torch_cv2_open3d():
    """The core must import with numpy + numba alone: block torch, cv2 and open3d and import it."""
    code = (
        "import sys\n"
        "for m in ('torch', 'cv2', 'open3d'):\n"
        "    sys.modules[m] = None\n"
        "import conformal\n"
        "print(conformal.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
