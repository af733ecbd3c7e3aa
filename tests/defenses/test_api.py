"""The public API of stochdef.defenses: what ``__all__`` promises, and that it keeps up with the modules.

The rule: every module of the package (but the internal ``validation`` and ``files``, and the ``zoo``
sub-package) declares ``__all__``; the package exports each of those names, as the same object (only
``data.load`` is renamed, to ``load_dataset``); every public function or class a module defines is in its
``__all__`` or named in :data:`INTERNAL` below, so a new one is a decision, not an accident.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from types import ModuleType

import pytest

import stochdef.defenses as defenses

NOT_EXPORTED = {"validation", "files", "zoo"}
RENAMED = {("data", "load"): "load_dataset"}
# Public helpers that stay out of __all__: argument checks and the building blocks of exported names.
INTERNAL = {
    ("bayes_layers", "log_std_linear"),  # BayesLinear's sampling step
    ("dropconnect", "check_p"),  # argument check
    ("functional", "standard_normal"),  # the draw behind gaussian_linear / gaussian_conv2d
    ("functional", "row_bias"),  # the per-row bias draw of gaussian_conv2d and the Flipout layers
    ("mwd", "check_input_range"),  # argument check
    ("mwd_functional", "LargeAttractorExp"),  # autograd functions behind mwd_unit
    ("mwd_functional", "SharedFeedbackMax"),
    ("mwd_functional", "max_weighted_sq_distance"),
    ("sdr", "decay_due"),  # the pieces of SDRDecay and ThresholdSchedule
    ("sdr", "default_init_std"),
    ("sdr", "plateaued"),
    ("sdr", "should_raise"),
}


def _modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(defenses.__path__) if m.name not in NOT_EXPORTED]
    return [importlib.import_module(f"{defenses.__name__}.{name}") for name in sorted(names)]


MODULES = _modules()


def _short(module: ModuleType) -> str:
    return module.__name__.rpartition(".")[2]


def test_every_name_in_all_is_importable_and_defined_in_a_defenses_module() -> None:
    assert len(defenses.__all__) == len(set(defenses.__all__))
    for name in defenses.__all__:
        obj = getattr(defenses, name)
        home = getattr(obj, "__module__", None)
        if home is None:  # a constant: find the module that holds it
            assert any(getattr(m, name, None) is obj for m in MODULES), name
        else:
            assert home.startswith(f"{defenses.__name__}."), (name, home)


@pytest.mark.parametrize("module", MODULES, ids=_short)
def test_every_name_of_a_modules_all_is_exported_by_the_package(module: ModuleType) -> None:
    names = getattr(module, "__all__", None)
    assert names, f"{module.__name__} declares no __all__"
    for name in names:
        exported = RENAMED.get((_short(module), name), name)
        assert exported in defenses.__all__, f"{module.__name__}.{name} is not in stochdef.defenses.__all__"
        assert getattr(defenses, exported) is getattr(module, name)


@pytest.mark.parametrize("module", MODULES, ids=_short)
def test_every_public_function_and_class_is_in_all_or_named_internal(module: ModuleType) -> None:
    public = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    }
    internal = {name for mod, name in INTERNAL if mod == _short(module)}
    assert internal <= public - set(module.__all__), "INTERNAL names a missing or exported helper"
    assert public - internal <= set(module.__all__), sorted(public - internal - set(module.__all__))


def test_the_exports_name_the_paper_defenses_converters_and_certificates() -> None:
    expected = {
        "SDRLinear", "sdr_mlp", "DropConnectLinear", "BayesLinear", "BayesConv2d", "to_bayesian", "to_rse",
        "apply_sap", "apply_rna", "apply_rsw", "NoiseInjection", "inject_noise", "MWDLayer", "mwd_net",
        "set_gradient", "interval_bounds", "certified_accuracy", "renyi_epsilon", "certified_epsilon",
        "DATASETS", "Dataset", "load_dataset", "SmallResNet", "mlp", "small_cnn", "accuracy", "fit",
        "pgd_adversary",
    }  # fmt: skip
    assert expected <= set(defenses.__all__)
    assert not {"validation", "check_int", "check_range"} & set(defenses.__all__)


def test_importing_the_package_loads_no_attack_library() -> None:
    code = (
        "import sys, stochdef.defenses, stochdef.defenses.zoo\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'foolbox', 'art', 'torchattacks', 'eagerpy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
