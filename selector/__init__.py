"""Integer programs that turn predicted qualities, costs and latencies into routing decisions.

- select_models: one request -> the cheapest (or best, or best-value) model or parallel set.
- plan_batch: N prompts -> one model each under a total budget or a mean-quality target.
- build_universe: a workload sample -> the pool of at most K models that serves it best.

The solvers take plain numpy arrays; selector.costs and selector.workload build those from the
registry and the predictor.
"""
from pickwise.selector.batch import plan_batch
from pickwise.selector.errors import BudgetInfeasible, InfeasibleSelection, PlanInfeasible, SelectorInputError
from pickwise.selector.request import ranking, select_models
from pickwise.selector.types import (
    BatchPlan,
    Candidate,
    CandidateReport,
    Decision,
    SelectionConstraints,
    UniversePlan,
)
from pickwise.selector.universe import build_universe

__all__ = [
    "BatchPlan", "BudgetInfeasible", "Candidate", "CandidateReport", "Decision", "InfeasibleSelection",
    "PlanInfeasible", "SelectionConstraints", "SelectorInputError", "UniversePlan",
    "build_universe", "plan_batch", "ranking", "select_models",
]
