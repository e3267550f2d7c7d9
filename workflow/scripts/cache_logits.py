from dawin.inputs import models, pixels
from dawin.inference.logits import compute_logits, save_logits
from dawin.method.expertise import check_informative
from dawin.method.weights import lerp
from dawin import identity, provenance
from dawin.runtime import start_job

log = start_job(snakemake)
p, paths = snakemake.params, list(snakemake.input.models)
if len(paths) == 2:  # the weight average theta(0.5) of the pair
    model, other = models.ImageClassifier.load_pair(*paths)
    model.load_state_dict(lerp(model.state_dict(), other.state_dict(), 0.5))
else:
    model = models.ImageClassifier.load(paths[0])
decoded = pixels.by_root(snakemake.input.data, snakemake.input.pixels)
hashes = {f: models.sha256(f) for f in paths}
checkpoint, sha256 = " + ".join(paths), " ".join(hashes.values())
for name, root, output in zip(p.datasets, snakemake.input.data, snakemake.output):
    data = pixels.open_dataset(root, model, decoded)
    logits, labels = compute_logits(model, data, p.batch_size, p.num_workers, use_autocast=p.autocast,
                                    desc=f"{checkpoint} on {data.name}")
    check_informative(logits, f"logits of {checkpoint} on {data.name}")
    save_logits(output, logits, labels, checkpoint=checkpoint, checkpoint_sha256=sha256, dataset=data.name,
                n_images=len(data), **provenance.record(hashes, [root]),
                **identity.stamp(backbone=snakemake.wildcards.backbone, model=snakemake.wildcards.model,
                                 checkpoint=checkpoint, **identity.of_dataset(data, name)))
    log.info("%s on %s: %s logits", checkpoint, data.name, tuple(logits.shape))
