import pandas as pd
import torch

from dawin import datasets, models
from dawin.evaluation import evaluate_grid
from dawin.expertise import accuracy
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
p = snakemake.params
model0 = models.ImageClassifier.load(snakemake.input.model0)
model1 = models.ImageClassifier.load(snakemake.input.model1, model0.architecture)
data = datasets.load_dataset(snakemake.input.data, transform=models.preprocess(model0.visual))
labels = torch.as_tensor(data.labels)
logits = evaluate_grid(model0, model1, data, p.alphas, p.batch_size, p.num_workers, use_autocast=p.autocast)
rows = [{"alpha": a, "accuracy": accuracy(z, labels)} for a, z in logits.items()]
for r in rows:
    log.info("alpha %.2f: %.2f", r["alpha"], r["accuracy"])
pd.DataFrame(rows).to_csv(snakemake.output[0], index=False, float_format="%.6g")
