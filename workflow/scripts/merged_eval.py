import numpy as np
import torch

from dawin import datasets, models, variants
from dawin.evaluation import GroupedEvaluator, PerSampleEvaluator, summarize
from dawin.runtime import setup_logging, write_json
from dawin.tensorio import load_tensors, save_tensors

log = setup_logging(snakemake.log[0])
p, wc = snakemake.params, snakemake.wildcards
model0 = models.ImageClassifier.load(snakemake.input.model0)
model1 = models.ImageClassifier.load(snakemake.input.model1, model0.architecture)
coefficients, _ = load_tensors(snakemake.input.coefficients, p.datasets)
mixture = dict(p.mixture)
n_components = mixture.pop("n_components", 1)
Evaluator = PerSampleEvaluator if wc.assignment == "per_sample" else GroupedEvaluator
evaluator = Evaluator(batch_size=p.batch_size, num_workers=p.num_workers, use_autocast=p.autocast)
report = {}
for d, root, path in zip(p.datasets, snakemake.input.data, snakemake.output[: len(p.datasets)]):
    data = datasets.load_dataset(root, transform=models.preprocess(model0.visual))
    coef, info = variants.assign(coefficients[d].numpy(), wc.assignment, n_components, p.seed, **mixture)
    logits = evaluator.evaluate(model0, model1, data, coef)
    summary = summarize(logits, torch.as_tensor(data.labels))
    accuracy = float((summary["pred"] == summary["labels"]).double().mean() * 100)
    save_tensors(path, {**summary, "coefficients": torch.as_tensor(coef)},
                 {"kind": wc.kind, "assignment": wc.assignment, "dataset": d})
    report[d] = {"accuracy": accuracy, **info}
    log.info("%s/%s on %s: accuracy %.2f with %d distinct coefficients", wc.kind, wc.assignment, d, accuracy,
             len(np.unique(coef)))
write_json(snakemake.output.assignment, report)
