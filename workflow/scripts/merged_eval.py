import numpy as np
import torch

from dawin.inputs import models, pixels
from dawin.method import variants
from dawin.inference.evaluation import PER_SAMPLE_EVALUATORS, GroupedEvaluator, summarize
from dawin import identity, provenance
from dawin.runtime import start_job, write_json
from dawin.tensorio import load_tensors, save_tensors

log = start_job(snakemake)
p = snakemake.params
model0, model1 = models.ImageClassifier.load_pair(snakemake.input.model0, snakemake.input.model1)
coefficients = {}
for path in snakemake.input.coefficients:
    tensors, meta = load_tensors(path, p.datasets)
    coefficients[meta["kind"]] = tensors
outputs = iter(snakemake.output)
merged = {(k, a, d): next(outputs) for k, a in p.pairs for d in p.datasets}
reports = {(k, a): next(outputs) for k, a in p.pairs}
mixture = dict(p.mixture)
n_components = mixture.pop("n_components", 1)
evaluators = {per_sample: (PER_SAMPLE_EVALUATORS[p.per_sample] if per_sample else GroupedEvaluator)(
    batch_size=p.batch_size, num_workers=p.num_workers, use_autocast=p.autocast) for per_sample in (False, True)}
report = {pair: {} for pair in reports}
decoded = pixels.by_root(snakemake.input.data, snakemake.input.pixels)
models_used = {f: models.sha256(f) for f in (snakemake.input.model0, snakemake.input.model1)}
for d, root in zip(p.datasets, snakemake.input.data):
    data = pixels.open_dataset(root, model0, decoded)
    labels = torch.as_tensor(data.labels)
    record = provenance.record(models_used, [root])  # once per test set, shared by its pairs
    data_identity = identity.of_dataset(data, d)
    for kind, assignment in p.pairs:
        coef, info = variants.assign(coefficients[kind][d].numpy(), assignment, n_components, p.seed, **mixture)
        logits = evaluators[assignment == "per_sample"].evaluate(model0, model1, data, coef)
        summary = summarize(logits, labels)
        accuracy = float((summary["pred"] == summary["labels"]).double().mean() * 100)
        save_tensors(merged[kind, assignment, d], {**summary, "coefficients": torch.as_tensor(coef)},
                     {"kind": kind, "assignment": assignment, "dataset": d, **record,
                      **identity.stamp(backbone=snakemake.wildcards.backbone, kind=kind, assignment=assignment,
                                       **data_identity)})
        report[kind, assignment][d] = {"accuracy": accuracy, **info}
        log.info("%s/%s on %s: accuracy %.2f with %d distinct coefficients", kind, assignment, d, accuracy,
                 len(np.unique(coef)))
for pair, path in reports.items():
    write_json(path, report[pair])
