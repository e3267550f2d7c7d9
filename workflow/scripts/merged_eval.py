import numpy as np
import torch
from safetensors.torch import load_file

from dawin import datasets, models
from dawin.evaluation import EVALUATORS
from dawin.expertise import accuracy
from dawin.logits import save_logits
from dawin.runtime import read_json, setup_logging

log = setup_logging(snakemake.log[0])
p, mode = snakemake.params, snakemake.wildcards.mode
model0 = models.ImageClassifier.load(snakemake.input.model0)
model1 = models.ImageClassifier.load(snakemake.input.model1, model0.architecture)
data = datasets.load_dataset(snakemake.input.data, transform=models.preprocess(model0.visual))
if mode == "clustered":
    mix = read_json(snakemake.input.coefficients)
    coef = np.asarray(mix["cluster_coefficients"])[np.asarray(mix["membership"])]
else:
    coef = load_file(snakemake.input.coefficients)["coefficients"].numpy()
evaluator = EVALUATORS[mode](batch_size=p.batch_size, num_workers=p.num_workers, use_autocast=p.autocast)
logits = evaluator.evaluate(model0, model1, data, coef)
labels = torch.as_tensor(data.labels)
save_logits(snakemake.output[0], logits, labels, mode=mode, dataset=data.name)
log.info("%s DaWin on %s: accuracy %.2f with %d distinct coefficients", mode, data.name,
         accuracy(logits, labels), len(np.unique(coef)))
