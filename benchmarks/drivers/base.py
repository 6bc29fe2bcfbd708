"""What every driver is: open once per base URL, then stream whole responses on demand."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["MESSAGES", "PROMPT", "AsyncDriver", "DriverFactory", "DriverSpec", "SyncDriver"]

PROMPT = "Tell me a long story about a bear."
MESSAGES = [{"role": "user", "content": PROMPT}]
"""The Chat Completions drivers' ``messages``."""


class SyncDriver(ABC):
    """A sync client under test, bound to one ``base_url``."""

    @abstractmethod
    def stream(self) -> int:
        """Stream one response to its end; returns how many events were received."""

    def before(self) -> None:  # noqa: B027 -- optional hook
        """Untimed, before each sample (e.g. switch an instrumentation on)."""

    def after(self) -> int | None:
        """Untimed, after each sample: spans finished since the last call (``None``: untraced)."""
        return None

    def close(self) -> None:  # noqa: B027 -- optional hook
        """Release the client."""


class AsyncDriver(ABC):
    """An asyncio client under test, bound to one ``base_url``."""

    @abstractmethod
    async def stream(self) -> int:
        """Stream one response to its end; returns how many events were received."""

    def before(self) -> None:  # noqa: B027 -- optional hook
        """Untimed, before each sample."""

    def after(self) -> int | None:
        """Untimed, after each sample: spans finished since the last call."""
        return None

    async def aclose(self) -> None:  # noqa: B027 -- optional hook
        """Release the client."""


DriverFactory = Callable[[str], "SyncDriver | AsyncDriver"]


@dataclass(frozen=True)
class DriverSpec:
    """A named way to build a driver, and what it needs installed."""

    name: str
    kind: Literal["sync", "async"]
    factory: DriverFactory
    requires: tuple[str, ...] = ()
    traced: bool = False
    """Whether every stream must end one exported span (checked after each sample)."""
    check: Callable[[], bool] | None = None
    """Run after ``requires`` is found: whether what the driver calls exists (e.g. a new API)."""

    def available(self) -> bool:
        """Whether the packages this driver needs are installed (and ``check`` passes)."""
        found = all(_installed(module) for module in self.requires)
        return found and (self.check is None or self.check())


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing (find_spec imports parents)
        return False
