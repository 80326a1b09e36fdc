"""Building plugin managers and finding the plugins installed under the ``dispatchio`` group."""

from __future__ import annotations

import importlib.metadata
import threading
import warnings
from typing import NamedTuple

import pluggy

from dispatchio import hookspecs

ENTRY_POINT_GROUP = "dispatchio"

#: Marks a plugin's hook implementations: ``@dispatchio.hookimpl``.
hookimpl = pluggy.HookimplMarker("dispatchio")


class PluginLoadWarning(UserWarning):
    """An installed plugin could not be loaded and was skipped."""


class PluginInfo(NamedTuple):
    """An installed plugin, as ``dispatchio plugins`` lists it."""

    name: str
    distribution: str | None
    version: str | None
    transports: tuple[str, ...]
    hooks: tuple[str, ...]


class PluginManager(pluggy.PluginManager):
    """A pluggy plugin manager for the dispatchio hooks, remembering where plugins came from."""

    def __init__(self) -> None:
        super().__init__("dispatchio")
        self.add_hookspecs(hookspecs)
        #: Plugin name to (distribution name, version), for plugins loaded from entry points.
        self.origins: dict[str, tuple[str, str]] = {}

    def load_entrypoints(self) -> None:
        """Load every plugin of the ``dispatchio`` entry-point group not yet registered.

        A plugin that fails to import, or that implements a hook that does not exist
        (a misspelling), is skipped with a `PluginLoadWarning` naming it; the others load.
        """
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            name = entry_point.name
            if self.has_plugin(name) or self.is_blocked(name):
                continue
            try:
                plugin = entry_point.load()
                self.register(plugin, name=name)
            except Exception as exc:
                warnings.warn(
                    f"dispatchio plugin {name!r} ({entry_point.value}) was skipped: {exc}",
                    PluginLoadWarning,
                    stacklevel=3,
                )
                continue
            unknown = _unknown_hooks(self, plugin)
            if unknown:
                self.unregister(plugin)
                warnings.warn(
                    f"dispatchio plugin {name!r} was skipped: it implements {unknown[0]!r},"
                    " which is not a dispatchio hook",
                    PluginLoadWarning,
                    stacklevel=3,
                )
                continue
            dist = entry_point.dist
            if dist is not None:
                self.origins[name] = (dist.metadata["Name"], dist.version)

    def transports(self) -> dict[str, str]:
        """Collect the registered transports: URL scheme to ``"module:ClassName"``.

        Raises:
            ValueError: two plugins register the same scheme, or a target is not of the
                form ``"module:ClassName"``.
        """
        return registered_transports(self)

    def describe(self) -> list[PluginInfo]:
        """Describe every registered plugin: origin, transports and implemented hooks."""
        infos = []
        for name, plugin in sorted(self.list_name_plugin(), key=lambda item: str(item[0])):
            if plugin is None:  # blocked
                continue
            schemes: list[str] = []
            others = [p for p in self.get_plugins() if p is not plugin]
            only_this = self.subset_hook_caller("dispatchio_register_transports", others)
            only_this(register=lambda scheme, target, found=schemes: found.append(scheme))
            hooks = tuple(sorted(caller.name for caller in self.get_hookcallers(plugin) or ()))
            dist, version = self.origins.get(str(name), (None, None))
            infos.append(PluginInfo(str(name), dist, version, tuple(schemes), hooks))
        return infos


def registered_transports(pm: pluggy.PluginManager) -> dict[str, str]:
    """`PluginManager.transports` for any plugin manager with the dispatchio hook specs."""
    found: dict[str, str] = {}

    def register(scheme: str, target: str) -> None:
        if ":" not in target:
            raise ValueError(f"transport {scheme!r}: {target!r} is not 'module:ClassName'")
        if scheme in found and found[scheme] != target:
            raise ValueError(
                f"transport scheme {scheme!r} registered twice: {found[scheme]} and {target}"
            )
        found[scheme] = target

    pm.hook.dispatchio_register_transports(register=register)
    return found


def checked_plugin_manager(plugins: object) -> pluggy.PluginManager:
    """Accept a plugin manager for a dispatcher: a `PluginManager`, or a plain
    ``pluggy.PluginManager("dispatchio")``, to which the dispatchio hook specs are added
    when it has none yet (so its plugins are checked against them, as
    `make_plugin_manager` would).

    Raises:
        TypeError: not a ``pluggy.PluginManager``.
        ValueError: a plugin manager of another project (its hooks are not dispatchio's),
            or one that has some of the dispatchio hook specs but not all.
    """
    if not isinstance(plugins, pluggy.PluginManager):
        raise TypeError(
            f"plugins= takes a pluggy.PluginManager (see dispatchio.make_plugin_manager),"
            f" got {plugins!r}"
        )
    if plugins.project_name != "dispatchio":
        raise ValueError(
            f"plugins= is a plugin manager for project {plugins.project_name!r}; dispatchio"
            " needs one for 'dispatchio' (dispatchio.make_plugin_manager() builds one)"
        )
    names = [name for name in vars(hookspecs) if name.startswith("dispatchio_")]
    specified = [
        name
        for name in names
        if (caller := getattr(plugins.hook, name, None)) is not None and caller.has_spec()
    ]
    if not specified:
        plugins.add_hookspecs(hookspecs)
    elif len(specified) != len(names):
        missing = sorted(set(names) - set(specified))
        raise ValueError(f"plugins= lacks the dispatchio hook specs {missing}")
    return plugins


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Names of hooks ``plugin`` implements that no spec defines (misspellings).

    Like ``check_pending()``, but about one plugin only, so a bad plugin registered
    earlier is never blamed on the one being loaded.
    """
    return [
        caller.name
        for caller in pm.get_hookcallers(plugin) or ()
        if not caller.has_spec()
        and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())
    ]


def make_plugin_manager(*, load_entrypoints: bool = True) -> PluginManager:
    """Build a new plugin manager with the dispatchio hook specs.

    Args:
        load_entrypoints: Also load the plugins installed under the ``dispatchio``
            entry-point group (see `PluginManager.load_entrypoints`).
    """
    pm = PluginManager()
    if load_entrypoints:
        pm.load_entrypoints()
    return pm


_default_lock = threading.Lock()
_default: PluginManager | None = None


def default_plugin_manager() -> PluginManager:
    """Return the process-wide plugin manager, built (and entry points loaded) on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = make_plugin_manager()
        return _default
