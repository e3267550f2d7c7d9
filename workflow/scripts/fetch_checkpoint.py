from dawin.checkpoints import fetch_checkpoint
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
wc = snakemake.wildcards
path = fetch_checkpoint(f"{wc.ckpt}/{wc.role}", snakemake.params.spec, snakemake.output[0], snakemake.params.lock,
                        cache=snakemake.params.cache)
log.info("fetched %s", path)
