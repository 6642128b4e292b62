"""Cold start: a new model's vector (e, b) from its probe results, with no retraining.

With the prompt encoder fixed, scoring a model is a logistic regression in (e, b) on the probe
prompts' vectors u. Fifty results cannot pin down a free 65-dim vector, so the fit is a MAP
estimate under a Gaussian prior whose mean and covariance are those of the trained models'
vectors: a new model is assumed to look like the models already known, and its results say
where among them it lies (the IRT / EmbedLLM view of model representations). Which trained
models form that population is the caller's choice: QualityPredictor.reference_models takes
those measured on the same tables as the probe results.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def population_prior(vectors: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, float]:
    """The average trained model: used when a model has neither probe results nor a prior."""
    return vectors.mean(axis=0), float(bias.mean())


def gaussian_prior(vectors: np.ndarray, bias: np.ndarray, shrink: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision of (vector, bias) over a population of models (quality or length vectors)."""
    theta = np.hstack([vectors, bias[:, None]])
    mean = theta.mean(axis=0)
    cov = np.cov(theta, rowvar=False) if len(theta) > 1 else np.eye(theta.shape[1])
    cov = np.atleast_2d(cov)
    # shrink towards a scaled identity: with ~25 trained models the sample covariance is low-rank
    scale = np.trace(cov) / cov.shape[0] if np.trace(cov) > 0 else 1.0
    cov = (1 - shrink) * cov + shrink * scale * np.eye(cov.shape[0])
    return mean, np.linalg.inv(cov)


def fit_model_vector(
    u: np.ndarray,
    scores: np.ndarray,
    vectors: np.ndarray,
    bias: np.ndarray,
    temperature: float = 1.0,
    *,
    center: tuple[np.ndarray, float] | None = None,
    trust: float = 1.0,
) -> tuple[np.ndarray, float]:
    """MAP (e, b) for results `scores` in [0, 1] on prompts with vectors `u` [n, dim].

    The prior has the population's covariance; its mean is the population's, or `center` (a
    model's current (e, b), when new results refine a vector it already has), and its precision is
    multiplied by `trust` (how many population priors' worth of evidence the centre stands for).
    The more results, the less the prior weighs: the fit moves from the centre as far as they say.
    """
    # fit in calibrated units (p = sigmoid(z / T)), with the prior taken in the same units
    mean, precision = gaussian_prior(vectors / temperature, bias / temperature)
    if center is not None:
        mean = np.append(np.asarray(center[0], dtype=np.float64), center[1]) / temperature
    precision = precision * trust
    x = np.hstack([u, np.ones((len(u), 1))])
    y = np.clip(scores, 0.0, 1.0)

    def objective(theta):
        z = x @ theta
        p = 1.0 / (1.0 + np.exp(-z))
        # cross-entropy with soft targets, written stably
        nll = np.sum(np.logaddexp(0.0, z) - y * z)
        d = theta - mean
        grad = x.T @ (p - y) + precision @ d
        return nll + 0.5 * d @ precision @ d, grad

    result = minimize(objective, mean.copy(), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    theta = result.x
    # training scored logits / T; store vectors in the same units as the trained ones
    return theta[:-1] * temperature, float(theta[-1] * temperature)
