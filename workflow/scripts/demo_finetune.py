import torch

from dawin import identity
from dawin.inputs import datasets, models
from dawin.demo import train
from dawin.runtime import cpu_kernels, start_job

log = start_job(snakemake)
clf = models.ImageClassifier.load(snakemake.input.zeroshot)
data = datasets.load_dataset(snakemake.input.data, transform=models.preprocess(clf.visual))
identity.check_classes(clf.classnames, data, snakemake.input.zeroshot)
images = torch.stack([data[i][0] for i in range(len(data))])
labels = torch.tensor(data.labels)
clf = train.finetune_classifier(clf, images, labels, **snakemake.params.train)
clf.save(snakemake.output[0], source="demo_finetune", **cpu_kernels())
log.info("fine-tuned on %d images of %s with %s", len(data), data.name, snakemake.params.train)
