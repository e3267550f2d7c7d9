import numpy as np
import pandas as pd
import torch

from dawin import datasets, models
from dawin.evaluation import GroupedEvaluator
from dawin.expertise import accuracy
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
p = snakemake.params
model0 = models.ImageClassifier.load(snakemake.input.model0)
model1 = models.ImageClassifier.load(snakemake.input.model1, model0.architecture)
data = datasets.load_dataset(snakemake.input.data, transform=models.preprocess(model0.visual))
labels = torch.as_tensor(data.labels)
evaluator = GroupedEvaluator(batch_size=p.batch_size, num_workers=p.num_workers, use_autocast=p.autocast)
rows = []
for alpha in p.alphas:
    logits = evaluator.evaluate(model0, model1, data, np.full(len(data), alpha))
    rows.append({"alpha": alpha, "accuracy": accuracy(logits, labels)})
    log.info("alpha %.2f: %.2f", alpha, rows[-1]["accuracy"])
pd.DataFrame(rows).to_csv(snakemake.output[0], index=False, float_format="%.6g")
