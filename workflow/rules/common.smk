# Config access, wildcard constraints and path helpers shared by every rule file.
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

RESULTS = config["results"]
SUITE = config["suite"]
BACKBONES = sorted(config["backbones"])
DS = config["datasets"]
TEST_SETS = [DS["id_test"], *DS["ood"]]
EVAL_SETS = [DS["id_val"], *TEST_SETS]
MODELS = ["zeroshot", "finetuned"]
MERGE_MODES = ["clustered", "per_sample"]


def _check_datasets():
    missing = sorted(set(EVAL_SETS) - set(DS["roots"]))
    if missing:
        raise ValueError(f"config: datasets.roots has no entry for {missing}; add their directories")


_check_datasets()


wildcard_constraints:
    backbone="|".join(map(re.escape, BACKBONES)),
    model="|".join(MODELS),
    dataset="|".join(map(re.escape, sorted(DS["roots"]))),
    mode="|".join(MERGE_MODES),


def src(*modules):
    """The package modules a rule's script uses: declared as inputs so code changes rerun the rule."""
    return [workflow.source_path(f"../../src/dawin/{m}") for m in modules]


def dataset_dir(wildcards):
    return DS["roots"][wildcards.dataset]


def backbone_cfg(wildcards):
    return config["backbones"][wildcards.backbone]


def model_file(backbone, model):
    """The classifier file of (backbone, model): built zero-shot models, configured fine-tuned ones."""
    if model == "zeroshot":
        return f"{RESULTS}/models/{backbone}/zeroshot.safetensors"
    return config["backbones"][backbone]["finetuned"]


def zeroshot_weights(wildcards):
    zs = backbone_cfg(wildcards)["zeroshot"]
    return [zs["weights"]] if "weights" in zs else []


def merge_coefficients(wildcards):
    if wildcards.mode == "clustered":
        return f"{RESULTS}/mixtures/{wildcards.backbone}/{wildcards.dataset}.json"
    return f"{RESULTS}/coefficients/{wildcards.backbone}/{wildcards.dataset}.safetensors"


def logits_file(backbone, model, dataset):
    return f"{RESULTS}/logits/{backbone}/{model}/{dataset}.safetensors"


EVAL_PARAMS = dict(
    batch_size=config["evaluation"]["batch_size"],
    num_workers=config["evaluation"]["num_workers"],
    autocast=config["evaluation"]["autocast"],
)


def check_checkpoints():
    """Configured checkpoint files must exist or be made by a rule of this workflow.

    Snakemake itself only notices a missing input when a job has to run; a changed path to a missing
    file must stop the workflow whatever is already built, naming the path.
    """
    for name, bb in sorted(config["backbones"].items()):
        for path in (bb["finetuned"], bb["zeroshot"].get("weights")):
            if path and not Path(path).exists() and not any(r.is_producer(path) for r in workflow.rules):
                raise WorkflowError(
                    f"backbone {name}: checkpoint {path} does not exist and no rule makes it; "
                    "fetch or convert it first, or fix the path in the config"
                )


def source_path(ckpt, role, spec):
    """Where one source of a paper checkpoint lies once fetched (or built, for zero-shot heads)."""
    pres = config["paper"]["resources"]
    if "hf_repo" in spec:  # keyed by repository: shared by every checkpoint that uses it
        return f"{pres}/downloads/hf/{spec['hf_repo']}"
    if "head" in spec:
        return f"{RESULTS}/heads/{spec['head']['backbone']}/{spec['head']['dataset']}.safetensors"
    return f"{pres}/downloads/checkpoints/{ckpt}/{role}"


def checkpoint_sources(wildcards):
    """The sources of one paper checkpoint, named by their role (checkpoint, encoder, head, ...)."""
    specs = config["paper"]["checkpoints"][wildcards.ckpt]["sources"]
    return {role: source_path(wildcards.ckpt, role, spec) for role, spec in sorted(specs.items())}


def hf_repo_spec(wildcards):
    return {"hf_repo": f"{wildcards.owner}/{wildcards.name}"}


def expand_checkpoint_series(paper):
    """Numbered runs (`checkpoint_series`) become ordinary `checkpoints` entries named <series>-<i>."""
    for name, series in sorted(paper.get("checkpoint_series", {}).items()):
        for i in range(series["count"]):
            paper["checkpoints"][f"{name}-{i}"] = {
                "format": series["format"],
                "architecture": series["architecture"],
                "sources": {"checkpoint": {"url": [series["url"].format(i=i)]}},
            }
