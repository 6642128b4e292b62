"""Exceptions raised by the selector, each carrying the structured facts a caller needs to act.

They subclass ValueError so that callers treating "bad problem" generically still catch them,
while the API and CLI can read the fields (blocking constraints, minimum budget) directly.
"""
from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from pickwise.errors import PickwiseError


def at_least(value: float, digits: int = 6) -> str:
    """`value` to `digits` significant digits, never below it: a minimum budget shown rounded down
    (0.000264 for 0.00026415, 0.000000 for 1e-07) is refused when passed back."""
    return _rounded(value, digits, up=True)


def at_most(value: float, digits: int = 6) -> str:
    """`value` to `digits` significant digits, never above it: the best reachable mean quality shown
    rounded up is refused when asked for."""
    return _rounded(value, digits, up=False)


def _rounded(value: float, digits: int, up: bool) -> str:
    text = f"{value:.{digits}g}"
    if (float(text) >= value) if up else (float(text) <= value):
        return text
    exact = Decimal(value)
    step = Decimal(1).scaleb(exact.adjusted() - digits + 1)
    return f"{float(exact.quantize(step, rounding=ROUND_CEILING if up else ROUND_FLOOR)):.{digits}g}"


class SelectorInputError(PickwiseError, ValueError):
    """Malformed numeric input: wrong shape, NaN, or a quality outside [0, 1]."""


class InfeasibleSelection(PickwiseError, ValueError):
    """No model (or model set) satisfies a request's constraints.

    `blocking` maps every candidate model to the constraints that rule it out, so a caller
    can relax the right one; the message lists the same facts for humans.
    """

    def __init__(self, blocking: dict[str, list[str]], message: str | None = None):
        self.blocking = {name: list(reasons) for name, reasons in blocking.items()}
        super().__init__(message or self._describe(self.blocking))

    @staticmethod
    def _describe(blocking: dict[str, list[str]]) -> str:
        if not blocking:
            return "no candidate models were given"
        parts = [f"{name}: {', '.join(reasons) or 'no feasible set'}" for name, reasons in blocking.items()]
        return "no model satisfies the constraints (" + "; ".join(parts) + ")"

    def to_dict(self) -> dict:
        return {"error": "infeasible", "blocking": self.blocking, "message": str(self)}


class PlanInfeasible(PickwiseError, ValueError):
    """A batch plan has no feasible assignment.

    `reason` is a short machine-readable tag ('no allowed model', 'capacity',
    'quality target', 'budget'); `rows` lists prompt indices that have no allowed model.
    """

    def __init__(self, reason: str, message: str, rows: list[int] | None = None):
        self.reason = reason
        self.rows = list(rows or [])
        super().__init__(message)


class BudgetInfeasible(PlanInfeasible):
    """The budget is below the cheapest assignment that meets every other constraint.

    `min_budget` is that cheapest total cost (the smallest budget that makes the plan
    feasible); `budget` is what was asked for.
    """

    def __init__(self, budget: float, min_budget: float, detail: str = ""):
        self.budget = float(budget)
        self.min_budget = float(min_budget)
        message = (
            f"budget {budget:.6g} USD is infeasible: the cheapest assignment meeting the other "
            f"constraints costs {at_least(min_budget)} USD"
        )
        super().__init__("budget", message + (f" ({detail})" if detail else ""))


class SolverTimedOut(PickwiseError, RuntimeError):
    """The solver reached its time limit before it had any feasible answer to return; `time_limit`
    is the limit in seconds, so a caller can say what to raise."""

    def __init__(self, message: str, time_limit: float | None):
        self.time_limit = time_limit
        super().__init__(message)
