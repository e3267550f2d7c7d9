from dawin.checkpoints import fetch_checkpoint
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
wc, p = snakemake.wildcards, snakemake.params
key = p.spec["hf_repo"] if "hf_repo" in p.spec else f"{wc.ckpt}/{wc.role}"
path = fetch_checkpoint(key, p.spec, snakemake.output[0], p.lock, cache=p.cache)
log.info("fetched %s", path)
