"""Backend adapters: the protocol vendors implement, and the entry-point registry."""

from benchkit.backends.base import Backend, BackendInfo, WorkloadInfo
from benchkit.backends.registry import GROUP, load_backend_class, names, survey

__all__ = ["Backend", "BackendInfo", "WorkloadInfo", "GROUP", "load_backend_class", "names", "survey"]
