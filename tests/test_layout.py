"""The package's layout (issue 20): one place per idea, checked on the package itself.

- every network class the course defines lives in ``bncourse.models`` (normalisation layers in ``bncourse.norms``);
- what trains networks lives in ``bncourse.training``; the old module paths are gone (no shims);
- no module of the package or of ``scripts/`` imports another module's underscore names.

Each check is a function run on the real package and on a known-wrong input that it must catch.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import types
from pathlib import Path

import torch

import bncourse

ROOT = Path(__file__).resolve().parents[1]
NETWORK_HOMES = ("bncourse.models", "bncourse.norms")
OLD_PATHS = (
    "bncourse.engine",
    "bncourse.engine_step",
    "bncourse.train",
    "bncourse.parallel",
    "bncourse.cuda_graphs",
    "bncourse.rnn",
    "bncourse.inference",
    "bncourse.experiments.critique_nets",
)


def _package_modules() -> list[types.ModuleType]:
    return [importlib.import_module(m.name) for m in pkgutil.walk_packages(bncourse.__path__, "bncourse.")]


def stray_networks(modules: list[types.ModuleType]) -> list[str]:
    """``module.Class`` for every ``nn.Module`` subclass defined in a module outside :data:`NETWORK_HOMES`."""
    found = []
    for mod in modules:
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, torch.nn.Module) and obj.__module__ == mod.__name__:
                if not mod.__name__.startswith(NETWORK_HOMES):
                    found.append(f"{mod.__name__}.{name}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(source: str, filename: str) -> list[str]:
    """``file:line what`` for each underscore name the code imports from another module or reads from one.

    Flags ``from m import _name``, ``from m._private import x``, and ``alias._name`` where ``alias`` was
    imported from ``bncourse`` (a module or a name from one). Dunder names (``__version__``) are public.
    """
    tree = ast.parse(source, filename)
    found, imported = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{filename}:{node.lineno} {node.module}")
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{filename}:{node.lineno} {node.module}.{alias.name}")
                elif node.module.split(".")[0] == "bncourse":
                    imported.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "bncourse":
                    if any(_private(part) for part in alias.name.split(".")):
                        found.append(f"{filename}:{node.lineno} {alias.name}")
                    imported.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported:
            if _private(node.attr):
                found.append(f"{filename}:{node.lineno} {node.value.id}.{node.attr}")
    return found


# ------------------------------------------------------------------------------------------------ networks


def test_every_network_class_lives_in_models_or_norms():
    assert stray_networks(_package_modules()) == []


def test_stray_networks_catches_a_network_defined_in_an_experiment():
    fake = types.ModuleType("bncourse.experiments.fake")
    net = type("Net", (torch.nn.Module,), {"__module__": fake.__name__})
    fake.Net = net
    assert stray_networks([fake]) == ["bncourse.experiments.fake.Net"]
    fake.__name__ = "bncourse.models.fake"
    net.__module__ = fake.__name__
    assert stray_networks([fake]) == []


def test_experiments_use_the_networks_of_models():
    from bncourse import models
    from bncourse.experiments import critique, norms_compare, recurrent

    assert norms_compare.ConvNet3 is models.ConvNet3
    assert recurrent.ElmanRNN is models.ElmanRNN
    assert critique.critique_vgg is models.critique_vgg and critique.DeepLinear is models.DeepLinear
    assert all(getattr(models, name) is not None for name in models.__all__)


# ------------------------------------------------------------------------------------------------ training


def test_training_lives_in_one_package_and_the_old_paths_are_gone():
    from bncourse import training

    for name in ("mlp", "mlp_step", "loop", "cuda_graphs", "pool"):
        assert importlib.import_module(f"bncourse.training.{name}").__file__.startswith(str(ROOT)), name
    assert training.train_mlps.__module__ == "bncourse.training.mlp"
    assert training.train_models.__module__ == "bncourse.training.loop"
    # by file, not find_spec: an editable install of another checkout may map the old names to its files
    assert [p for p in OLD_PATHS if _module_files(p)] == []
    assert _module_files("bncourse.training.mlp") and _module_files("bncourse.models")


def _module_files(dotted: str) -> list[Path]:
    """The source file or package folder of module ``dotted`` in this checkout (empty when there is none)."""
    base = ROOT.joinpath(*dotted.split("."))
    return [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.exists()]


def test_folding_and_recalibration_live_next_to_the_norms():
    from bncourse import norms

    assert norms.fold_bn.__module__ == "bncourse.norms.folding"
    assert norms.recalibrate_bn.__module__ == "bncourse.norms.recalibrate"
    assert norms.bn_layers.__module__ == "bncourse.norms.batchnorm"


# ---------------------------------------------------------------------------------------- underscore names


def test_no_module_imports_another_modules_underscore_names():
    files = sorted((ROOT / "bncourse").rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))
    assert len(files) > 50
    found = [hit for f in files for hit in private_imports(f.read_text(), str(f.relative_to(ROOT)))]
    assert found == []


def test_private_imports_catches_each_form():
    source = (
        "from bncourse.models.feedforward import MLP, _init_\n"
        "from bncourse._grading_runtime import install\n"
        "import bncourse._grading_plugin\n"
        "from bncourse import data as bdata\n"
        "x = bdata._cache_path\n"
        "y = bdata.load_dataset\n"
        "from bncourse import __version__\n"
        "from torch.nn.modules.batchnorm import _BatchNorm\n"
    )
    assert private_imports(source, "m.py") == [
        "m.py:1 bncourse.models.feedforward._init_",
        "m.py:2 bncourse._grading_runtime",
        "m.py:3 bncourse._grading_plugin",
        "m.py:8 torch.nn.modules.batchnorm._BatchNorm",
        "m.py:5 bdata._cache_path",
    ]
    assert private_imports("from bncourse.models import MLP\nimport bncourse.data\n", "ok.py") == []


_IMPORT = re.compile(r"^\s*(?:from\s+(bncourse(?:\.\w+)*)\s+import\s+([\w, ()]+)|import\s+(bncourse(?:\.\w+)*))", re.M)


def missing_modules(text: str, root: Path) -> list[str]:
    """Every ``bncourse`` module that ``text`` imports (``import bncourse.x``, ``from bncourse.x import y``,
    ``from bncourse import x``) and that has no file under ``root``: found from the files, not by importing, so
    that an installed copy of an older package cannot hide a stale path."""

    def exists(dotted: str) -> bool:
        path = root.joinpath(*dotted.split("."))
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()

    found = []
    for m in _IMPORT.finditer(text):
        module = m.group(1) or m.group(3)
        if not exists(module):
            found.append(module)
        elif m.group(1) == "bncourse":  # from bncourse import x: x is a module, or a name of the package
            init = (root / "bncourse" / "__init__.py").read_text()
            for part in m.group(2).strip("() ").split(","):
                name = part.split()[0] if part.split() else ""
                if name and not exists(f"bncourse.{name}") and not re.search(rf"\b{name}\b", init):
                    found.append(f"bncourse.{name}")
    return found


def test_every_bncourse_import_names_a_module_that_exists():
    wrong = (
        "import numpy\nfrom bncourse.engine import train_mlps\n    from bncourse import widgets\nimport bncourse.x\n"
    )
    assert missing_modules(wrong, ROOT) == ["bncourse.engine", "bncourse.widgets", "bncourse.x"]
    assert (
        missing_modules("from bncourse import __version__, panels\nfrom bncourse.norms import BatchNorm\n", ROOT) == []
    )
    files = [*ROOT.glob("bncourse/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("scripts/*.py")]
    files += [*ROOT.glob("book/**/*.md"), *ROOT.glob("*.md")]
    stale = {
        f"{p.relative_to(ROOT)}: {m}"
        for p in files
        if p.name != "test_layout.py"
        for m in missing_modules(p.read_text(), ROOT)
    }
    assert not stale, f"imports of modules that do not exist: {sorted(stale)}"
