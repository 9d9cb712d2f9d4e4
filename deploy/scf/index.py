"""The SCF entry file. SCF's handler setting is `file.function` with the file at the package root,
so `index.main_handler` here is `handler.app.main_handler`.

SCF's newest Python runtime is Python3.10, and the function is written for 3.11: the one 3.11
feature it uses is `enum.StrEnum`, provided here with 3.11's behaviour (str() and format() give the
value) before the function is imported. On 3.11+ this file only re-exports the entry point.
"""

import enum
import sys

if sys.version_info < (3, 11) and not hasattr(enum, "StrEnum"):

    class StrEnum(str, enum.Enum):  # noqa: UP042 (the backport of enum.StrEnum itself)
        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)

        @staticmethod
        def _generate_next_value_(name: str, start: int, count: int, last_values: list) -> str:
            return name.lower()

    enum.StrEnum = StrEnum  # type: ignore[attr-defined,misc]

from handler.app import main_handler

__all__ = ["main_handler"]
