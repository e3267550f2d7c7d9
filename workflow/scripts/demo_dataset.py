from dawin.demo.build import write_demo_dataset
from dawin.demo.world import DOMAINS, SHAPES
from dawin.runtime import start_job

log = start_job(snakemake)
domain, split, n = snakemake.params.spec
write_demo_dataset(snakemake.output[0], snakemake.wildcards.dataset, SHAPES, DOMAINS[domain], split, n, snakemake.params.seed)
log.info("wrote %d images of domain %s (%s) to %s", n, domain, split, snakemake.output[0])
