"""Suite-wide test configuration: the `twin` marker that declares which Numba kernels a test compares against a
plain NumPy twin (checked by tests/test_kernel_twins.py).

Usage, on a test that compares kernels with their twin::

    @pytest.mark.twin("conformal._kernels.scores.all_rows", "conformal._kernels.scores.tie_group_scores",
                      twin=naive.all_scores)

`twin` is the NumPy/Python reference the test compares with (a callable the test's code refers to, as a global or
an attribute of one: ``naive.sets``), or the string "inline" when the reference is written out in the test body
(then the kernel's own name must appear there). Kernels are named "module.function" and may be reached through
their public wrapper.
"""
from __future__ import annotations

import inspect
import json
import os
import warnings

TWIN_REPORT_ENV = "CONFORMAL_TWIN_REPORT"


def pytest_configure(config):
    config.addinivalue_line("markers", "twin(*kernels, twin): the test compares these Numba kernels (module.function) "
                                       "with the plain NumPy twin `twin` (a callable, or 'inline')")


def _describe_twin(twin):
    if isinstance(twin, str):
        return {"kind": "inline" if twin == "inline" else "invalid", "name": twin, "module": None, "file": None,
                "is_dispatcher": False}
    func = getattr(twin, "py_func", twin)
    try:
        file = inspect.getsourcefile(func)
    except TypeError:
        file = None
    return {"kind": "callable" if callable(twin) else "invalid", "name": getattr(twin, "__name__", repr(twin)),
            "module": getattr(twin, "__module__", None), "file": file,
            "is_dispatcher": hasattr(twin, "py_func") and hasattr(twin, "signatures")}


def _unwrap(func):
    inner = getattr(getattr(func, "hypothesis", None), "inner_test", None)  # @given keeps the test here
    return inspect.unwrap(inner or func)


def _referenced_objects(func) -> list:
    """Objects the function's code names: globals, attributes of globals (``naive.sets``), nested code included."""
    g = func.__globals__
    out, codes = [], [func.__code__]
    while codes:
        code = codes.pop()
        names = code.co_names
        for n in names:
            if n not in g:
                continue
            out.append(g[n])
            for m in names:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        out.append(getattr(g[n], m))
                except Exception:  # noqa: BLE001 - any failing attribute is simply not a reference
                    pass
        codes.extend(c for c in code.co_consts if inspect.iscode(c))
    return out


def pytest_collection_modifyitems(session, config, items):
    """With CONFORMAL_TWIN_REPORT set, write every collected test's twin declarations to that JSON file."""
    path = os.environ.get(TWIN_REPORT_ENV)
    if not path:
        return
    report = []
    for item in items:
        marks = list(item.iter_markers(name="twin"))
        if not marks:
            continue
        func = getattr(item, "function", None)
        func = _unwrap(func) if func is not None else None
        try:
            source = inspect.getsource(func) if func is not None else ""
        except (OSError, TypeError):
            source = ""
        refs = _referenced_objects(func) if func is not None else []
        skipped = any(m.name == "skip" or (m.name == "skipif" and m.args and m.args[0] is True)
                      for m in item.iter_markers())
        for mark in marks:
            twin = mark.kwargs.get("twin")
            report.append({"nodeid": item.nodeid, "kernels": [str(k) for k in mark.args],
                           "twin": _describe_twin(twin), "twin_referenced": any(r is twin for r in refs),
                           "source": source, "skipped": skipped})
    with open(path, "w") as f:
        json.dump(report, f)
