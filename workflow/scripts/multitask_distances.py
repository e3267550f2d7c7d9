from functools import partial

import pandas as pd

from dawin.inputs import datasets, models
from dawin.report.distances import (distance_matrix, fid, image_features, inception_available, inception_feature_extractor,
                                    median_bandwidth, mmd)
from dawin.runtime import start_job

log = start_job(snakemake)
p = snakemake.params
kw = dict(batch_size=p.batch_size, num_workers=p.num_workers)
encoder = models.ImageClassifier.load(snakemake.input.pretrained).visual  # the pre-trained CLIP image tower
clip = {t: image_features(encoder, datasets.load_dataset(r, transform=models.preprocess(encoder)), p.n_examples, p.seed, **kw)
        for t, r in zip(p.tasks, snakemake.input.test)}
sigma = median_bandwidth(*clip.values())  # one kernel for the whole matrix
matrices = {"mmd": distance_matrix(clip, partial(mmd, bandwidth=sigma))[0]}
staged = snakemake.input.get("inception") or [None]  # the paper suite's fetched weights; else the hub cache
ok, message = inception_available(staged[0])
if staged[0] is not None and not ok:
    raise FileNotFoundError(message)
if ok:
    inception, transform = inception_feature_extractor(staged[0])
    feats = {t: image_features(inception, datasets.load_dataset(r, transform=transform), p.n_examples, p.seed,
                               normalize=False, **kw) for t, r in zip(p.tasks, snakemake.input.test)}
    matrices["fid"] = distance_matrix(feats, fid)[0]
else:  # Figure G's FID panel needs torchvision's Inception-V3 weights, which are not here
    log.warning("FID skipped: %s", message)
rows = [dict(metric=m, row=a, column=b, value=float(mat[i, j])) for m, mat in matrices.items()
        for i, a in enumerate(p.tasks) for j, b in enumerate(p.tasks)]
pd.DataFrame(rows).to_csv(snakemake.output[0], index=False, float_format="%.6g")
log.info("MMD (bandwidth %.4f) on %d images per task; FID %s", sigma, p.n_examples, "computed" if ok else "missing")
