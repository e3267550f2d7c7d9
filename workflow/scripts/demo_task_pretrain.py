from dawin.inputs import models
from dawin.demo import train
from dawin.runtime import cpu_kernels, start_job

log = start_job(snakemake)
arch = snakemake.params.architecture
clip = train.seeded_clip(arch, snakemake.params.seed)
clip = train.pretrain_captioned(clip, arch, seed=snakemake.params.seed, **snakemake.params.train)
models.save_clip(clip, arch, snakemake.output[0], **cpu_kernels())
log.info("pre-trained %s on captioned composites with %s", arch, snakemake.params.train)
