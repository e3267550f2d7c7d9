import copy

import torch

from dawin.demo import train
from dawin.inputs import datasets, models
from dawin.runtime import cpu_kernels, start_job

log = start_job(snakemake)
p = snakemake.params
clip = models.create_clip(p.architecture, weights=snakemake.input.clip)
for i, (task, root, output) in enumerate(zip(p.tasks, snakemake.input.data, snakemake.output.experts)):
    data = datasets.load_dataset(root, transform=models.preprocess(clip.visual))
    head = models.zeroshot_head(clip, p.architecture, data.classnames, data.templates)
    if i == 0:  # theta0: the pre-trained tower (the pool reads its tower only; any task's head completes the file)
        models.ImageClassifier.from_clip(copy.deepcopy(clip), p.architecture, head, data.classnames).save(
            snakemake.output.pretrained, source="demo_task_experts", task=task, **cpu_kernels())
    # a fresh copy of the pre-trained tower for each task; the task's zero-shot head, kept frozen
    clf = models.ImageClassifier.from_clip(copy.deepcopy(clip), p.architecture, head, data.classnames)
    images = torch.stack([data[k][0] for k in range(len(data))])
    clf = train.finetune_expert(clf, images, torch.tensor(data.labels), seed=p.seed, **p.train)
    clf.save(output, source="demo_task_experts", task=task, **cpu_kernels())
    log.info("expert for %s fine-tuned on %d images with %s", task, len(data), p.train)
