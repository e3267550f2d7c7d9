from dawin import datasets, models
from dawin.logits import compute_logits, save_logits
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
p = snakemake.params
model = models.ImageClassifier.load(snakemake.input.model)
data = datasets.load_dataset(snakemake.input.data, transform=models.preprocess(model.visual))
logits, labels = compute_logits(model, data, p.batch_size, p.num_workers, use_autocast=p.autocast,
                                desc=f"{snakemake.wildcards.model}/{data.name}")
save_logits(snakemake.output[0], logits, labels, checkpoint=snakemake.input.model,
            checkpoint_sha256=models.sha256(snakemake.input.model), dataset=data.name, n_images=len(data))
log.info("%s on %s: %s logits", snakemake.input.model, data.name, tuple(logits.shape))
