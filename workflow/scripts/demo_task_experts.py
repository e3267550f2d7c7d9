import copy

import torch

from dawin.demo import train
from dawin.inputs import datasets, models
from dawin.runtime import cpu_kernels, start_job

log = start_job(snakemake)
p = snakemake.params
clip = models.create_clip(p.architecture, weights=snakemake.input.clip)
for task, root, output in zip(p.tasks, snakemake.input.data, snakemake.output):
    data = datasets.load_dataset(root, transform=models.preprocess(clip.visual))
    head = models.zeroshot_head(clip, p.architecture, data.classnames, data.templates)
    # a fresh copy of the pre-trained tower for each task; the task's zero-shot head, kept frozen
    clf = models.ImageClassifier.from_clip(copy.deepcopy(clip), p.architecture, head)
    images = torch.stack([data[i][0] for i in range(len(data))])
    clf = train.finetune_encoder(clf, images, torch.tensor(data.labels), seed=p.seed, **p.train)
    clf.save(output, source="demo_task_experts", task=task, **cpu_kernels())
    log.info("expert for %s fine-tuned on %d images with %s", task, len(data), p.train)
