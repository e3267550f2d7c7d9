"""Beta and Dirichlet mixture models over DaWin's per-sample interpolation coefficients.

DaWin (Oh et al., "DaWin: Training-free Dynamic Weight Interpolation for Robust
Adaptation", ICLR 2025) computes one interpolation coefficient ``l(x_i)`` per test
sample from the models' prediction entropies. Interpolating the weights again for every
sample is expensive, so the paper's appendix clusters the coefficients with a mixture
model and interpolates once per cluster. Each cluster uses the mean of its component.
With two models the coefficients are scalars in [0, 1] and a Beta mixture is used
(:class:`BetaMixture`). With M > 2 models they are points on the (M-1)-simplex and a
Dirichlet mixture is used (:class:`DirichletMixture`). The coefficient of sample ``i``
becomes ``mix.cluster_coefficients()[mix.predict(x)[i]]``.

Both models use the same EM procedure. A Beta(a, b) density on ``x`` is the Dirichlet(a, b)
density on ``(x, 1 - x)``, so the Beta mixture maps every scalar to that 2-vector and
shares the code:

* **Initialisation.** K-means (scikit-learn, ``n_init=1``, ``random_state=seed + r``) for
  restarts ``r = 0 .. n_restarts - 1``, giving one-hot responsibilities. The Beta mixture
  runs K-means on the 1-D values and the Dirichlet mixture on the rows. The restart with
  the best final mean log-likelihood is kept, and the earlier restart wins a tie.
* **M-step (method of moments).** For component k, with responsibilities r_ik and
  N_k = sum_i r_ik, take the weighted means m_kj and the biased weighted variances v_kj of
  every coordinate. The precision is the pooled moment estimate
  ``s_k = sum_j m_kj(1 - m_kj) / V_k - 1`` with ``V_k = sum_j v_kj``. Then
  ``alpha_k = s_k * m_k`` and ``pi_k = N_k / N``. For a Beta this is exactly
  ``s = m(1 - m)/v - 1, a = s m, b = s (1 - m)``, because both coordinates give the same
  m(1 - m) and v. For a Dirichlet, Var(x_j) = m_j(1 - m_j)/(s + 1) holds for every j, so
  the pooled ratio is a variance-weighted average of the per-coordinate estimates. That
  keeps a nearly constant coordinate from dominating the estimate.
* **E-step.** log Dirichlet/Beta pdf (gammaln form) + log pi_k, normalised with
  ``scipy.special.logsumexp``.
* **Stopping.** Stop when the absolute change of the mean log-likelihood is below ``tol``,
  or after ``max_iter`` iterations (M-step + E-step pairs).
* **Ordering.** Components are sorted by their mean vector, lexicographically, i.e. by
  the mean of the first coordinate. For the Beta mixture this is the ascending Beta mean.

Degenerate-input rules. They are deterministic, never produce NaN and never crash:

1. Empty input, non-finite values, and values outside the domain raise ``ValueError``
   with the number of offending values. For Beta the domain is [0, 1]. For Dirichlet the
   rows must be non-negative and sum to 1 within ``1e-6``.
2. Values at the boundary are clipped to ``eps`` before fitting and predicting. For
   Beta, x is clipped to [eps, 1 - eps]. For Dirichlet, coordinates are clipped to
   >= eps and each row is renormalised to sum 1.
3. ``n_components`` larger than the number of distinct (clipped) values/rows is reduced
   to that number with a ``UserWarning``.
4. During EM, a component whose responsibility mass N_k falls below ``MIN_MASS`` (1e-6
   samples) is dropped before the next M-step, and K shrinks. The final K is stored in
   ``n_components_``.
5. Each component's pooled variance V_k is clipped to
   ``[VAR_FLOOR, VAR_CAP] * sum_j m_kj(1 - m_kj)``, where VAR_FLOOR = 1e-6 and
   VAR_CAP = 1/4. A Beta has the same rule per coordinate:
   ``1e-6 m(1-m) <= v <= m(1-m)/4``. So ``3 <= s <= 1e6 - 1`` and every concentration is
   finite and positive. An over-dispersed cluster (v > m(1-m)/4) therefore gets s = 3.
   The floor handles zero-variance clusters: with all-equal input
   there is a single component whose mean equals the (clipped) value, and every sample
   is predicted to be in cluster 0.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln, logsumexp

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

VAR_FLOOR = 1e-6
"""Relative variance floor: V_k >= VAR_FLOOR * sum_j m_kj(1 - m_kj), hence s_k <= 1e6 - 1."""
VAR_CAP = 0.25
"""Relative variance cap: V_k <= VAR_CAP * sum_j m_kj(1 - m_kj), hence s_k >= 3."""
MIN_MASS = 1e-6
"""Components whose responsibility mass N_k (in samples) falls below this are dropped."""
SIMPLEX_ATOL = 1e-6
"""Rows given to :class:`DirichletMixture` must satisfy |sum - 1| <= SIMPLEX_ATOL."""

__all__ = [
    "BetaMixture",
    "assign_by_mixture",
    "DirichletMixture",
]


class _EMResult(NamedTuple):
    conc: FloatArray  # (K, P) Dirichlet concentrations
    weights: FloatArray  # (K,) mixing weights pi_k
    mean_ll: float
    n_iter: int
    converged: bool


def _dirichlet_logpdf(X: FloatArray, conc: FloatArray) -> FloatArray:
    """Return ``log Dir(X_i | conc_k)`` with shape (N, K). With P = 2 it is the Beta log pdf."""
    log_norm = gammaln(conc.sum(axis=1)) - gammaln(conc).sum(axis=1)
    return np.log(X) @ (conc - 1.0).T + log_norm


def _moment_match(X: FloatArray, resp: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Run the weighted method-of-moments M-step and return ``(conc (K, P), weights (K,))``."""
    nk = resp.sum(axis=0)
    mean = (resp.T @ X) / nk[:, None]
    var = np.stack([resp[:, k] @ (X - mean[k]) ** 2 for k in range(len(nk))]) / nk[:, None]
    spread = (mean * (1.0 - mean)).sum(axis=1)  # sum_j m_j (1 - m_j)
    total_var = np.clip(var.sum(axis=1), VAR_FLOOR * spread, VAR_CAP * spread)
    precision = spread / total_var - 1.0
    return precision[:, None] * mean, nk / nk.sum()


def _run_em(X: FloatArray, resp: FloatArray, tol: float, max_iter: int) -> _EMResult:
    """Alternate M- and E-steps from ``resp``.

    The result holds the parameters of the last M-step and their mean log-likelihood.
    """
    ll_prev = -np.inf
    for it in range(1, max_iter + 1):
        keep = resp.sum(axis=0) >= MIN_MASS  # drop components that lost all their mass
        if not keep.all():
            resp = resp[:, keep]
            resp /= resp.sum(axis=1, keepdims=True)
        conc, weights = _moment_match(X, resp)
        log_joint = _dirichlet_logpdf(X, conc) + np.log(weights)
        log_norm = logsumexp(log_joint, axis=1, keepdims=True)
        ll = float(log_norm.mean())
        resp = np.exp(log_joint - log_norm)
        if abs(ll - ll_prev) < tol:
            return _EMResult(conc, weights, ll, it, True)
        ll_prev = ll
    return _EMResult(conc, weights, ll, max_iter, False)


def _kmeans_resp(features: FloatArray, k: int, seed: int) -> FloatArray:
    """Return one-hot responsibilities (N, k) from scikit-learn K-means labels."""
    if k == 1:
        return np.ones((len(features), 1))
    from sklearn.cluster import KMeans  # here: importing scikit-learn takes 2-3 s, which one-cluster fits skip

    labels = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(features)
    return np.eye(k)[labels]


class _SimplexMixture:
    """Shared EM, restarts, ordering and prediction for the Beta and Dirichlet mixtures."""

    def __init__(
        self,
        n_components: int,
        *,
        n_restarts: int = 3,
        seed: int = 0,
        tol: float = 1e-4,
        max_iter: int = 1000,
        eps: float = 1e-4,
    ) -> None:
        if int(n_components) != n_components or n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
        if int(n_restarts) != n_restarts or n_restarts < 1:
            raise ValueError(f"n_restarts must be a positive integer, got {n_restarts!r}")
        if int(max_iter) != max_iter or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        if not tol > 0:
            raise ValueError(f"tol must be > 0, got {tol!r}")
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
        self.n_components = int(n_components)
        self.n_restarts = int(n_restarts)
        self.seed = int(seed)
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self.eps = float(eps)

    # Subclass hooks ---------------------------------------------------------------------
    def _to_simplex(self, x: ArrayLike) -> FloatArray:
        """Validate and clip the input, then return it as (N, P) points on the simplex."""
        raise NotImplementedError

    def _kmeans_features(self, X: FloatArray) -> FloatArray:
        """Return the features K-means initialises from. The default is the simplex rows."""
        return X

    # Fitting ----------------------------------------------------------------------------
    def fit(self, x: ArrayLike) -> _SimplexMixture:
        """Fit the mixture by EM with K-means restarts; see the module docstring for the rules."""
        X = self._to_simplex(x)
        k = self.n_components
        n_distinct = len(np.unique(X, axis=0))
        if k > n_distinct:
            warnings.warn(
                f"n_components={k} exceeds the {n_distinct} distinct value(s) in the input "
                f"(after clipping to eps={self.eps}); using n_components={n_distinct}",
                UserWarning,
                stacklevel=2,
            )
            k = n_distinct
        features = self._kmeans_features(X)
        best: _EMResult | None = None
        for r in range(self.n_restarts if k > 1 else 1):
            res = _run_em(X, _kmeans_resp(features, k, self.seed + r), self.tol, self.max_iter)
            if best is None or res.mean_ll > best.mean_ll:
                best = res
        assert best is not None
        mean = best.conc / best.conc.sum(axis=1, keepdims=True)
        order = np.lexsort(mean.T[::-1])  # first coordinate is the primary key
        self.concentrations_: FloatArray = best.conc[order]
        self.weights_: FloatArray = best.weights[order]
        self.n_components_: int = len(order)
        self.mean_log_likelihood_: float = best.mean_ll
        self.n_iter_: int = best.n_iter
        self.converged_: bool = best.converged
        return self

    # Inference --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "concentrations_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    def _log_joint(self, x: ArrayLike) -> FloatArray:
        self._check_fitted()
        X = self._to_simplex(x)
        return _dirichlet_logpdf(X, self.concentrations_) + np.log(self.weights_)

    def responsibilities(self, x: ArrayLike) -> FloatArray:
        """Return the posterior component probabilities, shape (N, n_components_); rows sum to 1."""
        log_joint = self._log_joint(x)
        return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))

    def predict(self, x: ArrayLike) -> IntArray:
        """Return the cluster label (argmax responsibility) in ``0 .. n_components_ - 1``."""
        return np.argmax(self._log_joint(x), axis=1).astype(np.intp)

    def log_likelihood(self, x: ArrayLike) -> float:
        """Return the mean log-likelihood per sample of ``x`` after clipping."""
        return float(logsumexp(self._log_joint(x), axis=1).mean())


def _check_nonempty(arr: FloatArray) -> None:
    if arr.size == 0:
        raise ValueError("cannot fit or evaluate a mixture on empty input")


class BetaMixture(_SimplexMixture):
    """Mixture of K Beta distributions over scalar DaWin coefficients l(x_i) in [0, 1].

    This is the two-model case of DaWin's mixture-modeling speed-up (Oh et al., ICLR 2025,
    appendix). The samples are clustered by their interpolation coefficient, and cluster k
    then uses the Beta mean ``a_k / (a_k + b_k)`` (:meth:`cluster_coefficients`).

    The algorithm is K-means init with restarts, then EM. The M-step is the method of
    moments, ``s = m(1-m)/v - 1, a = s m, b = s (1-m), pi = N_k/N``, with v clipped to
    ``[1e-6 m(1-m), m(1-m)/4]``. The E-step is the Beta log pdf + log pi normalised by
    logsumexp. Components are sorted by ascending mean. The module docstring gives the full
    degenerate-input rules:
    NaN/inf/out-of-[0,1]/empty input -> ValueError; exact 0 or 1 -> clipped to
    [eps, 1-eps]; K > #distinct values -> reduced with a warning; empty components are
    dropped; zero within-cluster variance is floored.

    Attributes after :meth:`fit`: ``alpha_``, ``beta_``, ``weights_`` (K,),
    ``concentrations_`` (K, 2) = [alpha, beta], ``n_components_``,
    ``mean_log_likelihood_``, ``n_iter_``, ``converged_``.
    """

    def _to_simplex(self, x: ArrayLike) -> FloatArray:
        v = np.asarray(x, dtype=np.float64)
        _check_nonempty(v)
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.ndim != 1:
            raise ValueError(
                f"BetaMixture expects a 1-D array of coefficients, got shape {v.shape}"
            )
        n_bad = int((~np.isfinite(v)).sum())
        if n_bad:
            raise ValueError(f"{n_bad} of {v.size} values are not finite (NaN or inf)")
        n_out = int(((v < 0) | (v > 1)).sum())
        if n_out:
            raise ValueError(f"{n_out} of {v.size} values lie outside [0, 1]")
        v = np.clip(v, self.eps, 1.0 - self.eps)
        return np.column_stack([v, 1.0 - v])

    def _kmeans_features(self, X: FloatArray) -> FloatArray:
        return X[:, :1]  # K-means on the 1-D values themselves

    def fit(self, x: ArrayLike) -> BetaMixture:
        """Fit on a 1-D array of coefficients in [0, 1] and return ``self``."""
        super().fit(x)
        return self

    @property
    def alpha_(self) -> FloatArray:
        """Beta shape parameters a_k, shape (K,), in the same order as the components."""
        self._check_fitted()
        return self.concentrations_[:, 0]

    @property
    def beta_(self) -> FloatArray:
        """Beta shape parameters b_k, shape (K,), in the same order as the components."""
        self._check_fitted()
        return self.concentrations_[:, 1]

    def cluster_coefficients(self) -> FloatArray:
        """Return the Beta mean a_k / (a_k + b_k) of each component, ascending, shape (K,)."""
        self._check_fitted()
        return self.alpha_ / (self.alpha_ + self.beta_)


class DirichletMixture(_SimplexMixture):
    """Mixture of K Dirichlet distributions over DaWin coefficient vectors for M > 2 models.

    Each row of ``x`` (N, M) is a point on the simplex. This is a real K-component mixture.
    The DaWin reference code set K to M and used a plain weighted mean as its M-step; this
    class does not. It starts from K-means on the rows with restarts and runs EM. The
    M-step is the weighted method of moments: per component, the weighted mean m and the
    weighted variances v_j, then the pooled precision ``s = sum_j m_j(1-m_j) / sum_j v_j - 1``
    with the pooled variance clipped to ``[1e-6, 1/4] * sum_j m_j(1-m_j)``, then
    ``alpha = s m`` and ``pi = N_k / N``. The E-step is the Dirichlet log pdf (gammaln) +
    log pi, normalised by logsumexp.
    :meth:`cluster_coefficients` returns the Dirichlet means ``alpha_k / sum(alpha_k)``.
    With K = 1 that is the fitted Dirichlet mean, which equals the sample mean of the
    (clipped, renormalised) coefficient vectors. Components are sorted lexicographically
    by their mean vector.

    Degenerate input, as in the module docstring: rows must be finite, non-negative and
    sum to 1 within 1e-6, else ``ValueError`` with the count; empty input raises
    ``ValueError``; zeros are clipped to eps and the row is renormalised;
    K > #distinct rows is reduced with a warning; empty components are dropped; zero
    variance is floored.

    Attributes after :meth:`fit`: ``alpha_`` (K, M), ``weights_`` (K,),
    ``n_components_``, ``mean_log_likelihood_``, ``n_iter_``, ``converged_``.
    """

    def _to_simplex(self, x: ArrayLike) -> FloatArray:
        X = np.asarray(x, dtype=np.float64)
        _check_nonempty(X)
        if X.ndim != 2 or X.shape[1] < 2:
            raise ValueError(
                f"DirichletMixture expects an (N, M) array with M >= 2, got shape {X.shape}"
            )
        if hasattr(self, "concentrations_") and X.shape[1] != self.concentrations_.shape[1]:
            raise ValueError(f"expected {self.concentrations_.shape[1]} columns, got {X.shape[1]}")
        n = len(X)
        n_bad = int((~np.isfinite(X)).any(axis=1).sum())
        if n_bad:
            raise ValueError(f"{n_bad} of {n} rows contain non-finite values (NaN or inf)")
        n_neg = int((X < 0).any(axis=1).sum())
        if n_neg:
            raise ValueError(f"{n_neg} of {n} rows contain negative values")
        n_off = int((np.abs(X.sum(axis=1) - 1.0) > SIMPLEX_ATOL).sum())
        if n_off:
            raise ValueError(f"{n_off} of {n} rows do not sum to 1 (tolerance {SIMPLEX_ATOL})")
        X = np.maximum(X, self.eps)
        return X / X.sum(axis=1, keepdims=True)

    def fit(self, x: ArrayLike) -> DirichletMixture:
        """Fit on an (N, M) array of simplex points and return ``self``."""
        super().fit(x)
        return self

    @property
    def alpha_(self) -> FloatArray:
        """Dirichlet concentrations, shape (K, M), in the same order as the components."""
        self._check_fitted()
        return self.concentrations_

    def cluster_coefficients(self) -> FloatArray:
        """Return the Dirichlet mean alpha_k / sum(alpha_k) of each component, shape (K, M)."""
        self._check_fitted()
        return self.alpha_ / self.alpha_.sum(axis=1, keepdims=True)


def assign_by_mixture(
    coefficients: ArrayLike,
    n_components: int,
    seed: int = 0,
    batch_size: int | None = None,
    **fit_kw: float,
) -> tuple[FloatArray, list[dict[str, object]]]:
    """Replace each coefficient by its Beta-mixture cluster's mean (DaWin's clustered evaluation, Table B).

    ``batch_size=None``: one :class:`BetaMixture` fitted on all N coefficients of the domain (the
    default, Table B's row "N"). ``batch_size=b``: Table B's rows 32 .. 2048. A permutation seeded
    with ``seed`` shuffles the domain (test folders are sorted by class, so consecutive samples would
    make single-class batches), the shuffled order is cut into consecutive batches of ``b`` like an
    evaluation loader with ``drop_last=False``, a mixture is fitted per batch (with the same ``seed``),
    and the assigned values are scattered back to the original order. Rule for the last batch: if it
    has fewer than ``n_components`` samples it cannot support K components, so it is merged into the
    previous batch; otherwise it is fitted on its own.

    Returns ``(assigned (N,) float64, info)``; ``info`` has one dict per fitted batch with
    ``n_samples``, ``coefficients`` (cluster Beta means, ascending), ``sizes`` (samples assigned to each
    cluster), ``alpha``, ``beta`` and ``weights``. ``fit_kw`` goes to :class:`BetaMixture`.
    """
    x = np.asarray(coefficients, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"coefficients must be 1-D, got shape {x.shape}")
    n = len(x)
    if n == 0:
        raise ValueError("no coefficients: cannot fit a mixture on an empty domain")
    if batch_size is None:
        batches = [np.arange(n)]
    else:
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        order = np.random.default_rng(seed).permutation(n)
        batches = [order[i:i + int(batch_size)] for i in range(0, n, int(batch_size))]
        if len(batches) > 1 and len(batches[-1]) < n_components:
            batches[-2:] = [np.concatenate(batches[-2:])]
    assigned = np.empty(n, dtype=np.float64)
    info: list[dict[str, object]] = []
    for idx in batches:
        mix = BetaMixture(n_components, seed=seed, **fit_kw).fit(x[idx])  # type: ignore[arg-type]
        labels = mix.predict(x[idx])
        coef = mix.cluster_coefficients()
        assigned[idx] = coef[labels]
        info.append({
            "n_samples": len(idx),
            "coefficients": coef,
            "sizes": np.bincount(labels, minlength=mix.n_components_),
            "alpha": mix.alpha_,
            "beta": mix.beta_,
            "weights": mix.weights_,
        })
    return assigned, info
