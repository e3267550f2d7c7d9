import torch

from dawin.inputs import models, pixels
from dawin.robust import soups
from dawin.method.expertise import accuracy
from dawin.inference.logits import compute_logits
from dawin import identity, provenance
from dawin.runtime import start_job

log = start_job(snakemake)
p, soup = snakemake.params, snakemake.wildcards.soup
runs = list(snakemake.input.runs)
info = {"ingredients": runs}
if soup == "uniform_soup":
    model = soups.uniform_soup(runs)
elif soup == "model_stock":
    model, ratios = soups.model_stock(snakemake.input.pretrained, runs)
    info["ratios"] = ratios
else:
    first = models.ImageClassifier.load(runs[0])
    data = pixels.open_dataset(snakemake.input.data, first, pixels.by_root(snakemake.input.data, snakemake.input.pixels))

    def held_out_accuracy(clf):
        logits, labels = compute_logits(clf, data, p.batch_size, p.num_workers, use_autocast=p.autocast)
        return accuracy(logits, labels)

    model, info = soups.greedy_soup(runs, held_out_accuracy)
    log.info("greedy soup of %d/%d ingredients: %s", len(info["ingredients"]), len(runs), info["ingredients"])
model.save(snakemake.output[0], soup=soup, ingredients=" ".join(runs), **provenance.record(runs),
           **identity.stamp(backbone=snakemake.wildcards.backbone, model=soup))
log.info("%s: %s", soup, info)
