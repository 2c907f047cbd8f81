"""vggbench.platform.mxnet: the one mxnet import, its thread count, the numpy and onnx.mapping shims."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import numpy
import onnx
import pytest

from vggbench import VggbenchError
from vggbench.platform import mxnet as mxnet_platform
from vggbench.platform.cpu import physical_cores

SHIM = Path(mxnet_platform.__file__)
PACKAGE_DIR = SHIM.parents[1]  # vggbench/


def _run_python(code: str, env_update=None, pythonpath_first=None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (mxnet reads its thread count once per process)."""
    env = dict(os.environ)
    env.pop("MXNET_OMP_MAX_THREADS", None)
    env.update(env_update or {})
    paths = [str(pythonpath_first)] if pythonpath_first else []
    env["PYTHONPATH"] = os.pathsep.join(paths + [str(PACKAGE_DIR.parent)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120)


# --- numpy aliases ---------------------------------------------------------------------------------

def test_the_alias_list_is_what_mxnet_uses_and_numpy_1_24_removed():
    """Each alias is the builtin numpy once served, and MXNet's own source really uses it."""
    import builtins
    import importlib.util
    import re

    mxnet_dir = Path(importlib.util.find_spec("mxnet").submodule_search_locations[0])
    source = "\n".join(path.read_text(errors="replace") for path in mxnet_dir.rglob("*.py"))
    for name, value in mxnet_platform.NUMPY_ALIASES.items():
        assert value is getattr(builtins, name)
        assert re.search(rf"\b(np|_np|onp)\.{name}\b(?![_\w])", source), f"mxnet does not use np.{name}"


def _numpy_like(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def test_new_numpy_gets_exactly_the_missing_aliases_and_nothing_else():
    """numpy >= 1.24 (here a stand-in without the aliases): both are set, no other attribute changes."""
    fake = _numpy_like("numpy_1_26", bool_=numpy.bool_, int_=numpy.int_, float64=numpy.float64,
                       float=numpy.float64)  # a name MXNet does not need must stay as it is
    before = dict(vars(fake))
    assert mxnet_platform.restore_numpy_aliases(fake) == ["bool", "int"]
    after = dict(vars(fake))
    assert {k: after[k] for k in set(after) - set(before)} == {"bool": bool, "int": int}
    assert all(after[k] is v for k, v in before.items())
    assert mxnet_platform.restore_numpy_aliases(fake) == []  # idempotent


class _OldNumpy(types.ModuleType):
    """numpy 1.20-1.23: the aliases are served by a module __getattr__ with a DeprecationWarning."""

    def __getattr__(self, name):
        if name in ("bool", "int"):
            warnings.warn(f"np.{name} is a deprecated alias", DeprecationWarning)
            return {"bool": bool, "int": int}[name]
        raise AttributeError(name)


def test_old_numpy_is_left_alone_and_no_warning_escapes():
    fake = _OldNumpy("numpy_1_23")
    fake.bool_ = numpy.bool_
    before = dict(vars(fake))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mxnet_platform.restore_numpy_aliases(fake) == []
    assert dict(vars(fake)) == before


def test_an_alias_numpy_already_defines_is_never_overridden():
    """numpy 2 defines np.bool again, as np.bool_: it must stay np.bool_."""
    fake = _numpy_like("numpy_2", bool=numpy.bool_)
    assert mxnet_platform.restore_numpy_aliases(fake) == ["int"]
    assert fake.bool is numpy.bool_ and fake.int is int


def test_real_import_restores_what_mxnet_needs_on_the_installed_numpy():
    mx = mxnet_platform.import_mxnet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert numpy.bool is bool and numpy.int is int
        assert mx.numpy.bool is bool  # mxnet/numpy/utils.py: `bool = onp.bool`, run at import
    if tuple(int(p) for p in numpy.__version__.split(".")[:2]) >= (1, 24):
        assert {"bool", "int"} <= set(vars(numpy))  # restored on the module itself
    assert float(mx.nd.ones((2, 3)).sum().asscalar()) == 6.0
    assert mx is sys.modules["mxnet"] and mxnet_platform.import_mxnet() is mx


# --- onnx.mapping ----------------------------------------------------------------------------------

def _helper_pairs():
    for tensor_type in onnx.helper.get_all_tensor_dtypes():
        try:
            yield int(tensor_type), onnx.helper.tensor_dtype_to_np_dtype(tensor_type)
        except (KeyError, ValueError, TypeError):
            continue


def test_mapping_tables_equal_onnx_helper_for_every_dtype():
    to_numpy, to_tensor = mxnet_platform.onnx_mapping_tables(onnx.helper)
    pairs = dict(_helper_pairs())
    assert to_numpy == pairs and len(pairs) >= 16
    for np_dtype, tensor_type in to_tensor.items():
        assert onnx.helper.np_dtype_to_tensor_dtype(np_dtype) == tensor_type
        assert to_numpy[tensor_type] == np_dtype
    # what mx.onnx looks up when it exports a float32 image classifier
    assert to_tensor[numpy.dtype("float32")] == onnx.TensorProto.FLOAT
    assert to_tensor[numpy.dtype("int64")] == onnx.TensorProto.INT64
    assert to_tensor[numpy.dtype("bool")] == onnx.TensorProto.BOOL


@pytest.mark.skipif(tuple(int(p) for p in onnx.__version__.split(".")[:2]) >= (1, 19),
                    reason="onnx >= 1.19 has no mapping module of its own to compare with")
def test_mapping_tables_equal_the_real_onnx_mapping_where_it_still_exists():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx import mapping

        real_to_tensor = dict(mapping.NP_TYPE_TO_TENSOR_TYPE)
        real_to_numpy = dict(mapping.TENSOR_TYPE_TO_NP_TYPE)
    to_numpy, to_tensor = mxnet_platform.onnx_mapping_tables(onnx.helper)
    assert to_tensor == real_to_tensor
    assert {t: to_numpy[t] for t in real_to_tensor.values()} == {t: real_to_numpy[t] for t in real_to_tensor.values()}


def test_onnx_without_mapping_gets_the_shim_module(monkeypatch):
    fake = types.ModuleType("fake_onnx")
    fake.helper = onnx.helper
    monkeypatch.setitem(sys.modules, "fake_onnx", fake)
    monkeypatch.delitem(sys.modules, "fake_onnx.mapping", raising=False)
    try:
        assert mxnet_platform.ensure_onnx_mapping(fake) is True
        from fake_onnx import mapping  # what mx.onnx's _export_model.py does

        assert mapping is fake.mapping is importlib.import_module("fake_onnx.mapping")
        assert mapping.NP_TYPE_TO_TENSOR_TYPE[numpy.dtype("float32")] == onnx.TensorProto.FLOAT
        assert mapping.TENSOR_TYPE_TO_NP_TYPE[onnx.TensorProto.FLOAT16] == numpy.dtype("float16")
        assert mxnet_platform.ensure_onnx_mapping(fake) is False  # installed once
    finally:
        sys.modules.pop("fake_onnx.mapping", None)


def test_an_onnx_with_its_own_mapping_is_left_alone(monkeypatch):
    fake = types.ModuleType("fake_onnx_old")
    fake.mapping = own = types.ModuleType("fake_onnx_old.mapping")
    assert mxnet_platform.ensure_onnx_mapping(fake) is False and fake.mapping is own


def test_mx_onnx_finds_the_tables_after_import_mxnet():
    mxnet_platform.import_mxnet()
    from onnx import mapping

    assert mapping.NP_TYPE_TO_TENSOR_TYPE[numpy.dtype("float32")] == onnx.TensorProto.FLOAT
    assert mapping.TENSOR_TYPE_TO_NP_TYPE[onnx.TensorProto.INT64] == numpy.dtype("int64")


# --- threads ---------------------------------------------------------------------------------------

def test_resolve_threads_order(monkeypatch, capfd):
    most = mxnet_platform.max_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert mxnet_platform.resolve_threads(most) == (most, "--threads")
    assert mxnet_platform.resolve_threads() == (1, "OMP_NUM_THREADS")
    # more than the machine can run is capped, with a warning naming the source
    assert mxnet_platform.resolve_threads(most + 7) == (most, "--threads")
    assert f"--threads {most + 7} is more than the {most} logical CPU(s)" in capfd.readouterr().err
    for junk in ("", "0", "two", "-1"):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert mxnet_platform.resolve_threads() == (physical_cores(), "physical cores")
    with pytest.raises(VggbenchError, match="--threads must be >= 1"):
        mxnet_platform.resolve_threads(0)


_REPORT_THREADS = """
    import ctypes, json, os
    from vggbench.platform import mxnet as mxnet_platform
    mx = mxnet_platform.import_mxnet({threads})
    gomp = ctypes.CDLL("libgomp.so.1")  # the OpenMP runtime libmxnet.so loaded
    print(json.dumps([mxnet_platform.mxnet_threads(), mxnet_platform.mxnet_threads_source(), os.environ["OMP_NUM_THREADS"],
                      "MXNET_OMP_MAX_THREADS" in os.environ, gomp.omp_get_max_threads()]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads libgomp's thread count (Linux)")
def test_threads_are_set_before_the_first_import():
    """An explicit count wins over MXNET_OMP_MAX_THREADS and reaches MXNet's OpenMP runtime."""
    most = mxnet_platform.max_threads()
    done = _run_python(_REPORT_THREADS.format(threads=f"threads={most}"), {"MXNET_OMP_MAX_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [most, "--threads", str(most), False, most]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads libgomp's thread count (Linux)")
def test_default_threads_are_the_physical_cores_not_mxnets_half():
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_REPORT_THREADS.format(threads=""))],
                          env={**env, "PYTHONPATH": str(PACKAGE_DIR.parent)}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    cores = physical_cores()
    assert json.loads(done.stdout.splitlines()[-1]) == [cores, "physical cores", str(cores), False, cores]


def test_another_thread_count_after_the_import_warns_and_keeps_the_real_one():
    mxnet_platform.import_mxnet()
    in_effect = mxnet_platform.mxnet_threads()
    with pytest.warns(RuntimeWarning, match=f"already runs with {in_effect} threads"):
        mxnet_platform.import_mxnet(threads=in_effect + 1)
    assert mxnet_platform.mxnet_threads() == in_effect
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mxnet_platform.import_mxnet(threads=in_effect)  # the same count: silent


# --- failed imports --------------------------------------------------------------------------------

_CATCH = """
    from vggbench import VggbenchError
    from vggbench.platform import mxnet as mxnet_platform
    try:
        mxnet_platform.import_mxnet()
    except VggbenchError as err:
        print("VggbenchError:", err)
"""


def test_missing_cuda_library_is_one_line_error(tmp_path):
    """What mxnet-cu117 does on a driver-only box: loading libmxnet.so raises OSError at import."""
    fake = tmp_path / "mxnet"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise OSError('libcudnn.so.8: cannot open shared object file: No such file or directory')\n")
    done = _run_python(_CATCH, pythonpath_first=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("VggbenchError: cannot import mxnet (OSError: libcudnn.so.8")
    assert "CUDA 11 libraries" in lines[0]


def test_mxnet_not_installed_is_one_line_error():
    code = """
        import sys
        class NoMxnet:
            def find_spec(self, name, path=None, target=None):
                if name == "mxnet":
                    raise ModuleNotFoundError("No module named 'mxnet'", name="mxnet")
        sys.meta_path.insert(0, NoMxnet())
    """
    done = _run_python(textwrap.dedent(code) + textwrap.dedent(_CATCH))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "No module named 'mxnet'" in lines[0] and 'pip install -e ".[cpu]"' in lines[0]


# --- one import site ---------------------------------------------------------------------------------

def _mxnet_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            if name == "mxnet" or name.startswith("mxnet."):
                yield f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno}"


def test_no_module_but_vggbench_mxnet_imports_mxnet():
    sources = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(sources) > 10
    assert list(_mxnet_imports(SHIM)), "the walker must see the shim's own import"
    offenders = [hit for path in sources if path != SHIM for hit in _mxnet_imports(path)]
    assert offenders == [], f"import mxnet through vggbench.platform.mxnet.import_mxnet(): {offenders}"
