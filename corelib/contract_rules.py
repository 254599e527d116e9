"""Named contract rules: a rule runs on its own and fails with what broke and how to fix it.

The machinery of :mod:`codec_lab.corelib.testing` (whose checks are lists of rules), kept apart
so that each kind's checks can live in their own module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

T = TypeVar("T")


# ---------------------------------------------------------------------------- rules
class ContractViolation(AssertionError):
    """A broken contract rule.

    Attributes:
        rule: the rule's name, e.g. ``decode returns int64 symbols``.
        detail: what happened, e.g. ``decode returned torch.float32``.
        hint: what to fix (may be empty).
    """

    def __init__(self, rule: str, detail: str, hint: str = "") -> None:
        self.rule, self.detail, self.hint = rule, detail, hint
        text = f'rule "{rule}" failed: {detail}'
        super().__init__(f"{text} (hint: {hint})" if hint else text)


class RuleSkipped(Exception):  # noqa: N818 -- not an error: a rule that did not run, and why
    """Raised by a rule that does not apply to this component, or that needs a rule which failed;
    its message says why."""


@dataclass(frozen=True)
class Rule:
    """One named contract rule; ``run()`` raises :class:`ContractViolation` (or the plugin's own
    exception) when it is broken and :class:`RuleSkipped` when it does not apply."""

    name: str
    run: Callable[[], None]


def require(condition: object, rule: str, detail: str, hint: str = "") -> None:
    """Raise :class:`ContractViolation` ``(rule, detail, hint)`` unless ``condition`` holds."""
    if not condition:
        raise ContractViolation(rule, detail, hint)


def run_rules(rules: Iterable[Rule]) -> None:
    """Run ``rules`` in order and raise the first failure; rules that do not apply are passed over."""
    for rule in rules:
        try:
            rule.run()
        except RuleSkipped:
            continue


class _Shared(Generic[T]):
    """What several rules use, made once by the first that asks; when making it failed, the
    others are skipped (the failure is reported once, by ``rule``)."""

    def __init__(self, make: Callable[[], T], rule: str) -> None:
        self._make, self._rule = make, rule
        self._value: T | None = None
        self._done = False
        self._skip: str | None = None

    def __call__(self) -> T:
        if self._skip is not None:
            raise RuleSkipped(self._skip)
        if not self._done:
            try:
                self._value = self._make()
            except RuleSkipped as e:
                self._skip = str(e)
                raise
            except BaseException:
                self._skip = f'not run: rule "{self._rule}" failed'
                raise
            self._done = True
        return self._value  # type: ignore[return-value]


def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if hasattr(t, "shape") else type(t).__name__


def _is_tensor(t: Any) -> bool:
    return isinstance(t, torch.Tensor)
