from dawin.inputs import models, pixels
from dawin.inference.profiling import profile_inference, subset
from dawin.method.calibration import read_temperatures
from dawin.runtime import setup_logging
from dawin.report.tables import tidy

log = setup_logging(snakemake.log[0])
p, backbone = snakemake.params, snakemake.wildcards.backbone
temps = read_temperatures(snakemake.input.temperatures)
model0 = models.ImageClassifier.load(snakemake.input.model0)
model1 = models.ImageClassifier.load(snakemake.input.model1, model0.architecture)
data = pixels.open_dataset(snakemake.input.data, model0.visual, pixels.by_root(snakemake.input.data, snakemake.input.pixels))
sample = subset(data, min(p.samples, len(data)), seed=p.seed)
df = profile_inference(model0, model1, sample, grid=p.grid, n_components=p.n_components,
                       temperatures=(temps["zeroshot"], temps["finetuned"]), batch_size=p.batch_size,
                       num_workers=p.num_workers, use_autocast=p.autocast, seed=p.seed,
                       per_sample_limit=p.per_sample_limit)
log.info("measured on %d of %d %s samples:\n%s", len(sample), len(data), p.dataset, df.to_string())
# Table F's runtime is for the whole ID test set: the measured time per sample times its size
columns = {"runtime_s": df.seconds_per_sample * len(data), "gflops_per_sample": df.gflops_per_sample,
           "memory_mb_per_sample": df.peak_memory_mb_per_sample, "seconds_per_sample": df.seconds_per_sample}
rows = [dict(suite=p.suite, backbone=backbone, method=m, dataset=p.dataset, metric=metric, value=float(v))
        for metric, values in columns.items() for m, v in zip(df.method, values)]
tidy(rows).to_csv(snakemake.output[0], index=False, float_format="%.6g")
