"""The token/cost meter: how full the window is and what a turn cost."""

from __future__ import annotations

from dataclasses import dataclass

from .backend import Usage

__all__ = ["WARN_AT", "CRITICAL_AT", "MeterReading", "Price"]

WARN_AT = 0.80
CRITICAL_AT = 0.95


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens; cached input falls back to the input price."""

    input: float
    output: float
    cached_input: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (
            (usage.prompt_tokens - cached) * self.input
            + cached * cached_rate
            + usage.completion_tokens * self.output
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class MeterReading:
    """Tokens in context against the window, this turn's usage and cost (None when unknown)."""

    context_tokens: int
    window: int
    exact: bool = True
    usage: Usage | None = None
    cost: float | None = None
    total_cost: float | None = None
    trimmed: bool = False

    @property
    def fraction(self) -> float:
        return self.context_tokens / self.window if self.window else 0.0

    @property
    def level(self) -> str:
        """'ok', 'warn' from 80 % of the window, 'critical' from 95 %."""
        if self.fraction >= CRITICAL_AT:
            return "critical"
        return "warn" if self.fraction >= WARN_AT else "ok"

    def parts(self) -> list[str]:
        """The meter's pieces: fill, cached tokens, this turn's cost, total cost (when known)."""
        approx = "" if self.exact else "~"
        used = f"{approx}{self.context_tokens:,} / {self.window:,} tokens in context"
        parts = [f"{used} ({self.fraction:.0%})"]
        if self.usage and self.usage.cached_tokens:
            parts.append(f"{self.usage.cached_tokens:,} cached")
        if self.cost == 0 and not self.total_cost:
            parts.append("no cost")  # a local model (or a price set to 0): no $0.0000 noise
        else:
            if self.cost is not None:
                parts.append(f"${self.cost:.4f} this turn")
            if self.total_cost is not None:
                parts.append(f"${self.total_cost:.4f} total")
        return parts

    def describe(self, sep: str = ", ") -> str:
        return sep.join(self.parts())
