import pandas as pd
import torch

from dawin.inputs import models, pixels
from dawin.inference.evaluation import evaluate_grid, summarize
from dawin import identity, provenance
from dawin.runtime import start_job
from dawin.tensorio import save_tensors

log = start_job(snakemake)
p = snakemake.params
model0, model1 = models.ImageClassifier.load_pair(snakemake.input.model0, snakemake.input.model1)
data = pixels.open_dataset(snakemake.input.data, model0, pixels.by_root(snakemake.input.data, snakemake.input.pixels))
out = evaluate_grid(model0, model1, data, p.alphas, p.batch_size, p.num_workers, use_autocast=p.autocast,
                    reduce=summarize)
alphas = sorted(out)
labels = torch.as_tensor(data.labels)
stacked = {k: torch.stack([out[a][k] for a in alphas]) for k in ("pred", "cross_entropy", "entropy")}
save_tensors(snakemake.output.samples, {**stacked, "alphas": torch.tensor(alphas, dtype=torch.float64), "labels": labels},
             {"dataset": data.name, **provenance.record([snakemake.input.model0, snakemake.input.model1],
                                                        [snakemake.input.data]),
              **identity.stamp(backbone=snakemake.wildcards.backbone,
                               **identity.of_dataset(data, snakemake.wildcards.dataset))})
rows = [{"alpha": a, "accuracy": float((out[a]["pred"] == labels).double().mean() * 100),
         "cross_entropy": float(out[a]["cross_entropy"].mean()), "entropy": float(out[a]["entropy"].mean())}
        for a in alphas]
for r in rows:
    log.info("alpha %.2f: accuracy %.2f, entropy %.4f", r["alpha"], r["accuracy"], r["entropy"])
pd.DataFrame(rows).to_csv(snakemake.output.csv, index=False, float_format="%.6g")
