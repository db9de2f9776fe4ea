"""Import on first use, so Django startup (``manage.py check``, a web worker booting) does not
load the job engine, the service, the providers and every view module.

* :func:`lazy_module`: a module whose code runs when one of its attributes is first read.
* :func:`lazy_view`: a URL pattern's view that imports its module on the first request.
* :class:`LazyView`: a URL pattern's view built on the first request (see ``viewsets``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from functools import partial
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


class LazyView:
    """A URL pattern's view that ``build()`` returns on the first request (and then kept).

    One small object per URL instead of a view function, its closure and a cache: URL
    patterns are loaded at startup and live as long as the process. Attributes given as
    keywords (and ``__name__``, ``__qualname__``, ``__module__``) are plain attributes, so
    decorators that copy a view's ``__dict__`` (``functools.wraps``, Wagtail's admin URL
    decoration) copy them too.
    """

    __slots__ = ("_build", "_view", "__dict__")

    def __init__(self, build: Callable[[], Callable], name: str, module: str, **attrs) -> None:
        self._build = build
        self._view = None
        self.__dict__.update(attrs, __name__=name, __qualname__=name, __module__=module)

    def __call__(self, request, *args, **kwargs):
        view = self._view
        if view is None:
            view = self._view = self._build()
        return view(request, *args, **kwargs)


def _import_view(dotted_path: str, initkwargs: dict | None = None) -> Callable:
    target = import_string(dotted_path)
    return target.as_view(**(initkwargs or {})) if hasattr(target, "as_view") else target


def lazy_view(dotted_path: str, **initkwargs) -> LazyView:
    """A view for ``path()``: ``dotted_path`` names a view function or a class-based view
    (called with ``as_view(**initkwargs)``), imported when the URL is first requested."""
    module, _dot, name = dotted_path.rpartition(".")
    build = partial(_import_view, dotted_path, initkwargs or None)
    return LazyView(build, name, module, lazy_view_path=dotted_path)
