from safetensors.torch import load_file

from dawin.mixtures import BetaMixture
from dawin.runtime import setup_logging, write_json

log = setup_logging(snakemake.log[0])
p = snakemake.params
coef = load_file(snakemake.input.coefficients)["coefficients"].numpy()
bmm = BetaMixture(p.n_components, n_restarts=p.n_restarts, seed=p.seed, tol=p.tol, max_iter=p.max_iter).fit(coef)
membership = bmm.predict(coef)
write_json(snakemake.output[0], {
    "n_components": int(bmm.n_components_), "alpha": bmm.alpha_.tolist(), "beta": bmm.beta_.tolist(),
    "weights": bmm.weights_.tolist(), "cluster_coefficients": bmm.cluster_coefficients().tolist(),
    "mean_log_likelihood": float(bmm.mean_log_likelihood_), "n_iter": int(bmm.n_iter_),
    "converged": bool(bmm.converged_), "membership": membership.tolist(),
})
log.info("K=%d cluster coefficients %s after %d iterations", bmm.n_components_, bmm.cluster_coefficients().round(4), bmm.n_iter_)
