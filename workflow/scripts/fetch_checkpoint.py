from dawin.inputs.checkpoints import fetch_checkpoint
from dawin.runtime import start_job

log = start_job(snakemake)
p = snakemake.params
path = fetch_checkpoint(p.key, p.spec, snakemake.output[0], p.lock, mirror=p.mirror, config_key=p.config_key,
                        rewrites=p.rewrites)
log.info("fetched %s", path)
