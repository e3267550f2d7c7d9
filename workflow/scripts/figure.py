from types import SimpleNamespace

from dawin.report.figures import save
from dawin.report.paper_figures import FIGURES
from dawin.runtime import start_job

log = start_job(snakemake)
p = snakemake.params
inputs = {k: [v] if isinstance(v, str) else list(v) for k, v in snakemake.input.items()}
params = SimpleNamespace(**{k: v for k, v in p.items()})
fig = FIGURES[p.name](inputs, params)
save(fig, snakemake.output[0].removesuffix(".png"))
log.info("%s written from %s", p.name, {k: len(v) for k, v in inputs.items()})
