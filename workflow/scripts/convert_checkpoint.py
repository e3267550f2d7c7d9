from safetensors.torch import load_file

from dawin.inputs.checkpoints import describe_source, enforce_lock, lock_key
from dawin.inputs.convert import convert
from dawin.runtime import start_job
from dawin.method.weights import relative_distance

log = start_job(snakemake)
p = snakemake.params
urls = {role: describe_source(spec) for role, spec in p.specs.items()}
record = convert(p.format, {role: snakemake.input[role] for role in p.specs}, p.architecture, snakemake.output.model,
                 sidecar=snakemake.output.sidecar, urls=urls,
                 expected_sha256={role: spec.get("sha256") for role, spec in p.specs.items()})
log.info("converted %s (%s) to %s", p.format, p.architecture, snakemake.output.model)
for role, spec in p.specs.items():  # the sources are accepted: their hashes go into the lock file
    if "head" not in spec:  # (a zero-shot head this workflow built is no download)
        enforce_lock(lock_key(snakemake.wildcards.ckpt, role, spec), snakemake.input[role], p.lock, spec.get("sha256"))
for other in snakemake.input.compare_to:  # e.g. task_vectors' theta0 against the OpenAI weights
    rel, worst = relative_distance(load_file(snakemake.output.model), load_file(other), "visual.")
    log.info("image tower vs %s: relative L2 distance %.3g, largest entry difference %.3g", other, rel, worst)
