from dawin.inputs.decode import write_pixels
from dawin.runtime import start_job

log = start_job(snakemake)
p = snakemake.params
n = write_pixels(snakemake.input.data, p.cfg, snakemake.output[0], num_workers=p.num_workers)
log.info("%d images of %s decoded as %s into %s", n, snakemake.input.data, snakemake.wildcards.pixels,
         snakemake.output[0])
