"""Import on first use, so Django startup (``manage.py check``, a web worker booting) does not
load the job engine, the service, the providers and every view module.

* :func:`lazy_module`: a module whose code runs when one of its attributes is first read.
* :func:`lazy_view`: a URL pattern's view that imports its module on the first request.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from types import ModuleType

from django.utils.module_loading import import_string


def lazy_module(name: str) -> ModuleType:
    """``name``, imported now if it already was, else on first attribute access."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    # As a real import does: the package gets the submodule as an attribute, so that
    # ``pydoc.locate("pkg.module.func")`` (how django-q2 workers find a task) still works.
    parent, _dot, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


def lazy_view(dotted_path: str, **initkwargs):
    """A view for ``path()``: ``dotted_path`` names a view function or a class-based view
    (called with ``as_view(**initkwargs)``), imported when the URL is first requested."""

    @cache
    def resolve():
        target = import_string(dotted_path)
        return target.as_view(**initkwargs) if hasattr(target, "as_view") else target

    def view(request, *args, **kwargs):
        return resolve()(request, *args, **kwargs)

    view.__name__ = dotted_path.rsplit(".", 1)[-1]
    view.__qualname__ = view.__name__
    view.__module__ = dotted_path.rsplit(".", 1)[0]
    view.lazy_view_path = dotted_path
    return view
