"""The kernel layer's dispatch: by implementation name, then by array type."""

import sys
import types

import numpy as np
import pytest

from sciimg import kernels
from sciimg.kernels import Kernel


def test_every_kernel_has_both_implementations():
    names = kernels.kernels()
    assert {"nlmeans", "fit_tensor", "median_otsu", "clipped_mean"} <= set(names)
    for kernel in names.values():
        assert kernel.implementations()[:2] == ("fast", "reference")


def test_dispatch_follows_the_array_types_mro():
    class Tagged(np.ndarray):
        pass

    k = Kernel("t")
    k.register("fast")(lambda a: "numpy")
    assert k(np.zeros(2).view(Tagged)) == "numpy"
    k.register("fast", Tagged)(lambda a: "tagged")
    assert k(np.zeros(2).view(Tagged)) == "tagged"
    assert k(np.zeros(2)) == "numpy"


def test_an_array_type_without_implementation_is_named():
    k = Kernel("t")
    k.register("fast")(lambda a: a)
    with pytest.raises(TypeError, match=r"takes no builtins\.list"):
        k([1, 2])


def test_lazy_registration_imports_the_module_on_first_use(tmp_path, monkeypatch):
    # A stand-in for an optional array package (CuPy) and for the module that
    # registers implementations for its arrays: imported at the first dispatch
    # of such an array, not before.
    pkg = types.ModuleType("fakearrays")
    pkg.ndarray = type("ndarray", (), {"__module__": "fakearrays"})
    pkg.kernel_under_test = k = Kernel("t")
    monkeypatch.setitem(sys.modules, "fakearrays", pkg)
    (tmp_path / "fakearrays_impl.py").write_text(
        "import fakearrays\n"
        "k = fakearrays.kernel_under_test\n"
        "k.register('fast', fakearrays.ndarray)(lambda a: 'fake')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    k.register("fast")(lambda a: "numpy")
    k.register_lazy("fakearrays", "fakearrays_impl")
    assert k(np.zeros(1)) == "numpy"
    assert "fakearrays_impl" not in sys.modules
    assert k(pkg.ndarray()) == "fake"
    monkeypatch.delitem(sys.modules, "fakearrays_impl")


def test_check_implementation_names_the_choices():
    with pytest.raises(ValueError, match="one of fast, reference, got 'gpu'"):
        kernels.check_implementation("gpu")


def test_the_dask_functions_refuse_an_unknown_implementation():
    import dask.array as da

    from sciimg.neuro import nlmeans

    with pytest.raises(ValueError, match="got 'quick'"):
        nlmeans(da.zeros((4, 4, 4, 1)), 1.0, implementation="quick")


def test_reference_is_dipy_itself():
    from dipy.denoise.nlmeans import nlmeans as dipy_nlmeans

    rng = np.random.default_rng(1)
    vol = rng.normal(100, 5, (10, 11, 9))
    mask = vol > 98
    ours = kernels.nlmeans(vol, 5.0, mask, block_radius=2, implementation="reference")
    theirs = dipy_nlmeans(
        vol, 5.0, mask=mask, block_radius=2, method="classic", num_threads=1
    )
    np.testing.assert_array_equal(ours, theirs)
