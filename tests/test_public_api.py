"""Every name a module exports in `__all__` exists, so `from unsplit_tf.X import *` works."""

import importlib
import pkgutil

import pytest

import unsplit_tf

MODULES = sorted(info.name for info in pkgutil.walk_packages(unsplit_tf.__path__, "unsplit_tf.")
                 if not info.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists(name):
    module = importlib.import_module(name)
    missing = [export for export in getattr(module, "__all__", ()) if not hasattr(module, export)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
