import torch

from dawin.inputs import datasets, models
from dawin.demo import train
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
p = snakemake.params
clip = models.create_clip(p.architecture, weights=snakemake.input.clip)
data = datasets.load_dataset(snakemake.input.data, transform=models.preprocess(clip.visual))
head = models.zeroshot_head(clip, p.architecture, data.classnames, data.templates)
clf = models.ImageClassifier.from_clip(clip, p.architecture, head)  # the task's zero-shot head, kept frozen
images = torch.stack([data[i][0] for i in range(len(data))])
clf = train.finetune_encoder(clf, images, torch.tensor(data.labels), seed=p.seed, **p.train)
clf.save(snakemake.output[0], source="demo_task_expert", task=snakemake.wildcards.task)
log.info("expert for %s fine-tuned on %d images with %s", snakemake.wildcards.task, len(data), p.train)
