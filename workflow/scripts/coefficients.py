from dawin.coefficients import entropy_ratio_coefficients, offset_adjusted_coefficients
from dawin.expertise import entropy
from dawin.logits import load_logits
from dawin.runtime import read_json, setup_logging
from dawin.tensorio import save_tensors

log = setup_logging(snakemake.log[0])
temps = read_json(snakemake.input.temperatures)
(z0, y, _), (z1, _, _) = (load_logits(p) for p in snakemake.input.logits)
h0, h1 = entropy(z0, temps["zeroshot"]), entropy(z1, temps["finetuned"])
eq1, eq2 = entropy_ratio_coefficients(h0, h1), offset_adjusted_coefficients(h0, h1)
coef = (eq2 if snakemake.params.offset_adjustment else eq1).clone()  # its own storage: no shared tensors
save_tensors(snakemake.output[0], {"coefficients": coef, "eq1": eq1, "eq2": eq2, "entropy0": h0, "entropy1": h1,
                                   "labels": y}, {"offset_adjustment": snakemake.params.offset_adjustment})
log.info("%d coefficients: mean %.4f std %.4f", len(coef), coef.mean(), coef.std())
