from dawin.inputs import models
from dawin.demo import train, world
from dawin.runtime import cpu_kernels, start_job

log = start_job(snakemake)
arch = snakemake.params.architecture
clip = train.seeded_clip(arch, snakemake.params.seed)
clip = train.pretrain_clip(clip, arch, world.SHAPES, world.PRETRAIN_DOMAINS, seed=snakemake.params.seed, **snakemake.params.train)
models.save_clip(clip, arch, snakemake.output[0], **cpu_kernels())
log.info("pre-trained %s with %s", arch, snakemake.params.train)
