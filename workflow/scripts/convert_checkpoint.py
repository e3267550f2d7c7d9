from dawin.checkpoints import describe_source
from dawin.convert import convert
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
p = snakemake.params
urls = {role: describe_source(spec) for role, spec in p.specs.items()}
record = convert(p.format, {role: snakemake.input[role] for role in p.specs}, p.architecture, snakemake.output.model,
                 sidecar=snakemake.output.sidecar, urls=urls,
                 expected_sha256={role: spec.get("sha256") for role, spec in p.specs.items()})
log.info("converted %s (%s) to %s", p.format, p.architecture, snakemake.output.model)
