import pandas as pd

from dawin.inputs import models, pixels
from dawin.inference.profiling import profile_inference, single_passes, subset
from dawin.method.calibration import read_temperatures
from dawin.runtime import start_job
from dawin.report.tidy import tidy

log = start_job(snakemake)
p, backbone = snakemake.params, snakemake.wildcards.backbone
temps = read_temperatures(snakemake.input.temperatures)
model0, model1 = models.ImageClassifier.load_pair(snakemake.input.model0, snakemake.input.model1)
# Table F's rows read the JPEGs, as the paper's numbers do; one model pass is also timed from the decoded images
jpeg = pixels.open_dataset(snakemake.input.data, model0.visual)
n = min(p.samples, len(jpeg))
sample = subset(jpeg, n, seed=p.seed)
kw = dict(batch_size=p.batch_size, num_workers=p.num_workers, use_autocast=p.autocast)
df = profile_inference(model0, model1, sample, grid=p.grid, n_components=p.n_components,
                       temperatures=(temps["zeroshot"], temps["finetuned"]), seed=p.seed,
                       per_sample_limit=p.per_sample_limit, **kw)
decoded = pixels.by_root(snakemake.input.data, snakemake.input.pixels)
paths = {"jpeg": sample}
if decoded:
    paths["decoded"] = subset(pixels.open_dataset(snakemake.input.data, model0.visual, decoded), n, seed=p.seed)
df = pd.concat([df, single_passes(model0, paths, **kw)], ignore_index=True)
log.info("measured on %d of %d %s samples:\n%s", n, len(jpeg), p.dataset, df.to_string())
# Table F's runtime is for the whole ID test set: the measured time per sample times its size
columns = {"runtime_s": df.seconds_per_sample * len(jpeg), "gflops_per_sample": df.gflops_per_sample,
           "memory_mb_per_sample": df.peak_memory_mb_per_sample, "seconds_per_sample": df.seconds_per_sample}
rows = [dict(suite=p.suite, backbone=backbone, method=m, dataset=p.dataset, metric=metric, value=float(v))
        for metric, values in columns.items() for m, v in zip(df.method, values) if pd.notna(v)]
tidy(rows).to_csv(snakemake.output[0], index=False, float_format="%.6g")
