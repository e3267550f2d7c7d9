# Config access, wildcard constraints and path helpers shared by every rule file.
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

try:  # plain data and an ast reader: no torch at DAG time
    import dawin
    from dawin import catalog, codedeps, registry, schema
except ModuleNotFoundError as error:
    raise WorkflowError(
        f"{error}: the workflow's Python package is not installed where snakemake runs. In a checkout run "
        "./setup.sh (it installs it into .venv with `pip install -e .`); for a deployed workflow install the "
        "release it deploys: pip install 'dawin @ git+<repository URL>@<tag>' (README, 'Deploying')"
    ) from None

# Every config file read strictly (dawin.configfiles): a key given twice is an error naming the file, the key and
# both lines (profiles/default reads the --configfile files so before Snakemake does; this covers the rest).
try:
    from dawin import configfiles

    configfiles.check(workflow.configfiles)
except configfiles.ConfigFileError as error:
    raise WorkflowError(str(error)) from None

# The config follows the schema, whose merging methods and targets are the registries' (dawin.schema); a workflow
# using this one as a module may skip it (`skip_validation: True`, as snakemake.utils.validate honours it)
try:
    if not workflow.modifier.skip_validation:
        schema.validate(config, workflow.source_path("../schemas/config.schema.yaml"),
                        shown="workflow/schemas/config.schema.yaml")
except schema.ConfigError as error:
    raise WorkflowError(str(error)) from None

# The checkout the rules' --use-conda environment installs the package from (envs/dawin.post-deploy.sh);
# a workflow deployed from a remote repository has none: set DAWIN_SOURCE to a pip requirement instead.
_RULES = workflow.current_basedir  # workflow/rules of this workflow's source: a local path or a remote URL
_CHECKOUT = Path(_RULES.get_path_or_uri(secret_free=True)).parents[1] if _RULES.is_local else None
if _CHECKOUT is not None and (_CHECKOUT / "src" / "dawin").is_dir():
    os.environ.setdefault("DAWIN_SOURCE", str(_CHECKOUT))

# Job processes inherit this environment (a variable already set wins): every job's idle OpenMP workers spin
# briefly, then sleep (dawin.runtime.JOB_ENVIRONMENT); the demo's CPU jobs run pinned kernel paths, so its numbers
# are the same on every x86-64 machine with AVX2 (dawin.runtime.CPU_KERNELS).
from dawin.runtime import CPU_KERNELS, JOB_ENVIRONMENT

for _name, _value in {**JOB_ENVIRONMENT, **(CPU_KERNELS if "demo" in config else {})}.items():
    os.environ.setdefault(_name, _value)

# Architecture names are checked before any job runs (a typo must not delete what it would rebuild), without
# importing open_clip (dawin.inputs.architectures).
try:
    from dawin.inputs import architectures
    from dawin.inputs.architectures import check_architectures

    check_architectures({
        **{f"backbones.{b}.architecture": v["architecture"] for b, v in config["backbones"].items()},
        **{f"paper.{group}.{n}.architecture": v["architecture"] for group in ("checkpoints", "checkpoint_series")
           for n, v in config.get("paper", {}).get(group, {}).items()},
        **({"multitask.architecture": config["multitask"]["architecture"]}
           if "architecture" in config.get("multitask", {}) else {}),
    })
except ValueError as error:
    raise WorkflowError(str(error)) from None
if "multitask" in config and config["multitask"]["backbone"] not in config["backbones"]:
    _missing = [f"multitask.{k}" for k in ("architecture", "pretrained") if k not in config["multitask"]]
    if _missing:
        raise WorkflowError(f"config multitask.backbone: {config['multitask']['backbone']!r} is not among backbones "
                            f"{sorted(config['backbones'])}; name one of them, or give the multi-task suite its own "
                            f"{' and '.join(_missing)}")

RESULTS = config["results"]
SUITE = config["suite"]
BACKBONES = sorted(config["backbones"])
DS = config["datasets"]
TEST_SETS = [DS["id_test"], *DS["ood"]]


def id_val(backbone):
    """The backbone's ID held-out split: backbones.<b>.id_val, else datasets.id_val (it picks WiSE-FT's alpha, the
    output ensemble's weight, the greedy soup and the temperatures)."""
    return config["backbones"][backbone].get("id_val", DS["id_val"])


def eval_sets(backbone):
    return [id_val(backbone), *TEST_SETS]


ID_VALS = sorted({id_val(b) for b in config["backbones"]})  # every backbone's pair is cached on all of them
EVAL_SETS = [*ID_VALS, *TEST_SETS]
MODELS = ["zeroshot", "finetuned"]  # the interpolated pair: temperatures, coefficients, merged models
SOUPS = ["uniform_soup", "greedy_soup", "model_stock"]
CACHED_MODELS = [*MODELS, "average", *SOUPS]  # "average": theta(0.5), the weight average (Figures 5, 6)
ANALYSIS = config["analysis"]
REFERENCE = workflow.source_path("../resources/paper_reference.yaml")  # the paper's numbers, shipped with the workflow
SWEEP = sorted({0.0, 1.0, *config["grid"], *ANALYSIS["fine_grid"]})  # the WiSE-FT sweep of every eval set

# The merged-model evaluations, (kind, assignment), each paper target needs (dawin.registry).
VARIANTS = {t: registry.variants(t, batch_sizes=ANALYSIS["batch_sizes"], grid=config["grid"])
            for t in catalog.CATALOG}
# the robust fine-tuning Beta mixture: its settings, and its seed (mixture.seed, default the config's seed; the
# paper suite uses naver-ai/dawin's --seed 1). The multi-task mixture keeps the config's seed (dawin_mtl: seed 0).
MIXTURE = {k: v for k, v in config["mixture"].items() if k != "seed"}
MIXTURE_SEED = config["mixture"].get("seed", config["seed"])
# merging methods run as a variant other than upstream's are labelled so in the tables (dawin.registry)
MERGING_LABELS = registry.merging_labels(config.get("multitask", {}).get("methods", {}))
ROBUST_TABLES = catalog.targets("table", multitask=False)
ROBUST_FIGURES = catalog.targets("fig", multitask=False)
MULTITASK_TABLES = catalog.targets("table", multitask=True) if "multitask" in config else []
MULTITASK_FIGURES = catalog.targets("fig", multitask=True) if "multitask" in config else []


def _check_datasets():
    missing = sorted(set(EVAL_SETS) - set(DS["roots"]))
    if missing:
        raise ValueError(f"config: datasets.roots has no entry for {missing}; add their directories")
    twice = sorted({d for d in EVAL_SETS if EVAL_SETS.count(d) > 1})
    if twice:  # a set with two roles would be both the held-out split and a test set, or ID and OOD at once
        raise ValueError(f"config: {twice} listed more than once among datasets.id_val (or a backbone's id_val), "
                         "id_test and ood; "
                         "give each evaluation set one role")
    by_root = {}
    for name in EVAL_SETS:
        by_root.setdefault(os.path.normpath(DS["roots"][name]), []).append(name)
    shared = {root: names for root, names in by_root.items() if len(names) > 1}
    if shared:  # two names, one directory: the rows would silently repeat one set
        root, names = next(iter(shared.items()))
        raise ValueError(f"config: datasets.roots of {', '.join(names)} are the same directory {root}; "
                         "each evaluation set needs its own")


_check_datasets()


def _warn_components():
    """A mixture of more components than a test set has images is fitted with fewer (dawin.method.mixtures warns in
    the job's log only): say so once, on the terminal, for the test sets already built."""
    import json

    for name, bb in sorted(config["backbones"].items()):
        sizes = {}
        for d in TEST_SETS:
            try:
                sizes[d] = int(json.loads((Path(DS["roots"][d]) / "dataset.json").read_text())["n_images"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not built yet, or damaged: the job that reads it says so
        small = {d: n for d, n in sizes.items() if n < bb["n_components"]}
        if small:
            d = min(small, key=small.get)
            print(f"Warning: backbones.{name}.n_components is {bb['n_components']}, more than the {small[d]} images of "
                  f"test set {d} ({len(small)} test set(s) in all): the mixtures there are fitted with at most one "
                  "component per distinct coefficient, fewer than asked. Lower n_components", file=sys.stderr)


if workflow.is_main_process:
    _warn_components()


wildcard_constraints:
    backbone="|".join(map(re.escape, BACKBONES)),
    model="|".join(CACHED_MODELS),
    soup="|".join(SOUPS),
    dataset="|".join(map(re.escape, sorted(DS["roots"]))),


PACKAGE_ROOT = Path(dawin.__file__).parent  # the installed package: what the scripts import
CODE_STAMPS = ".code-stamps"  # in the working directory: one digest of each module's code (dawin.codedeps)


def code_of(script):
    """The code stamps of the package files a rule's script (workflow/scripts/<script>) runs: its transitive
    imports of dawin, read from the source (dawin.codedeps). Declared as the rule's code inputs, so a change to
    what any module the script reaches does reruns the rule and what follows; a comment or docstring edit, or a
    change elsewhere, reruns nothing. Only the process that plans the jobs rewrites stamps (a cluster job's own
    Snakemake process parses the workflow too; is_main_process: snakemake/workflow.py, 9.27.1)."""
    path = Path(workflow.source_path(f"../scripts/{script}"))
    return [str(f) for f in codedeps.code_stamps(path, PACKAGE_ROOT, CODE_STAMPS, write=workflow.is_main_process)]


def dataset_dir(wildcards):
    return DS["roots"][wildcards.dataset]


def backbone_cfg(wildcards):
    return config["backbones"][wildcards.backbone]


def model_file(backbone, model):
    """The classifier file of (backbone, model): built zero-shot models and soups, configured fine-tuned ones."""
    if model == "finetuned":
        return config["backbones"][backbone]["finetuned"]
    stock = config["backbones"][backbone].get("soups", {}).get("model_stock")
    if model == "model_stock" and isinstance(stock, dict):  # a converted Model Stock checkpoint
        return stock["checkpoint"]
    return f"{RESULTS}/models/{backbone}/{model}.safetensors"


def model_inputs(wildcards):
    """The files a cached model is made of: one classifier, or the pair whose weight average it is."""
    if wildcards.model == "average":
        return [model_file(wildcards.backbone, m) for m in MODELS]
    return [model_file(wildcards.backbone, wildcards.model)]


def soup_ingredients(backbone):
    """The fine-tuning runs of a backbone's soups (a list, or a numbered pattern with first..last)."""
    spec = config["backbones"][backbone].get("soups")
    if spec is None:
        return []
    ing = spec["ingredients"]
    if isinstance(ing, dict):
        return [ing["pattern"].format(i=i) for i in range(ing["first"], ing["last"] + 1)]
    return list(ing)


def _check_soups():
    """A run listed twice among a backbone's soup ingredients or Model Stock runs (under any spelling) would be
    averaged twice, with a cost that counts it twice too."""
    from dawin.identity import listed_twice

    for name, bb in sorted(config["backbones"].items()):
        stock = bb.get("soups", {}).get("model_stock")
        for key, runs in (("ingredients", soup_ingredients(name)), ("model_stock", stock if isinstance(stock, list) else [])):
            twice = listed_twice(runs)
            if twice:
                raise WorkflowError(f"config backbones.{name}.soups.{key}: duplicate run: {twice[0]!r} and "
                                    f"{twice[1]!r} are {twice[2]}, so the soup would count it twice; list each "
                                    "fine-tuning run once")


_check_soups()


def soup_inputs(wildcards):
    spec = config["backbones"][wildcards.backbone].get("soups")
    if spec is None:
        raise WorkflowError(f"backbone {wildcards.backbone} has no `soups` in the config: no soups or Model Stock")
    if wildcards.soup == "model_stock":
        return {"runs": spec["model_stock"], "pretrained": model_file(wildcards.backbone, "zeroshot")}
    if wildcards.soup == "greedy_soup":
        held_out = DS["roots"][id_val(wildcards.backbone)]
        return {"runs": soup_ingredients(wildcards.backbone), "data": held_out,
                "pixels": pixels_files(wildcards.backbone, [held_out])}
    return {"runs": soup_ingredients(wildcards.backbone)}


def target_backbones(target):
    """The backbones a paper target is built for (config `targets`, else `targets.default`)."""
    value = config["targets"].get(target, config["targets"]["default"])
    names = [value] if isinstance(value, str) else list(value)
    unknown = sorted(set(names) - set(BACKBONES))
    if unknown:
        raise WorkflowError(f"config targets.{target}: unknown backbones {unknown}; known: {BACKBONES}")
    return names


def merged_file(backbone, kind, assignment, dataset):
    return f"{RESULTS}/merged/{backbone}/{kind}/{assignment}/{dataset}.safetensors"


def has_authors_temperatures(backbone):
    return "authors_temperatures" in config["backbones"][backbone]


def authors_temperatures(backbone):
    """The (zero-shot, fine-tuned) temperatures naver-ai/dawin hard-codes for the backbone (config)."""
    if not has_authors_temperatures(backbone):
        raise WorkflowError(f"backbone {backbone} has no authors_temperatures in the config: Table E's row 'DaWin "
                            "with the authors' temperatures' needs the two numbers naver-ai/dawin uses for it")
    return config["backbones"][backbone]["authors_temperatures"]


def merged_files(target, backbones=None):
    """The merged-model evaluations a target needs, for every test set of its backbones (the authors'-temperature
    rows only for backbones that have them)."""
    return [merged_file(b, k, a, d) for b in (backbones or target_backbones(target))
            for k, a in VARIANTS[target] if registry.available(k, has_authors_temperatures(b)) for d in TEST_SETS]


def zeroshot_weights(wildcards):
    zs = backbone_cfg(wildcards)["zeroshot"]
    return [zs["weights"]] if "weights" in zs else []


def logits_file(backbone, model, dataset):
    return f"{RESULTS}/logits/{backbone}/{model}/{dataset}.safetensors"


def coefficients_file(backbone, kind):
    return f"{RESULTS}/coefficients/{backbone}/{kind}.safetensors"


def sweep_files(backbone, datasets, ext="safetensors"):
    return [f"{RESULTS}/wise_ft/{backbone}/{d}.{ext}" for d in datasets]


# Decoded images (dawin.inputs.pixels): each evaluated dataset's pixels after resize and crop, written once per
# (dataset, preprocessing) and read by every pass over it, when `images.decoded` is on. Backbones whose
# architectures resize and crop alike share one file, named by the preprocessing's key.
IMAGES = config["images"]
PIXELS = IMAGES["cache"] or f"{RESULTS}/pixels"


def _source_name(root):
    """A dataset directory's folder in the cache: its path with separators flattened (unique, checked below)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.normpath(root)).strip("_.")


_PIXEL_ROOTS = sorted({*(DS["roots"][d] for d in EVAL_SETS),
                       *(t["test"] for t in config.get("multitask", {}).get("tasks", {}).values())})
PIXEL_SOURCES = {_source_name(r): r for r in _PIXEL_ROOTS}
if len(PIXEL_SOURCES) != len(_PIXEL_ROOTS):
    raise WorkflowError("config: two dataset directories flatten to one decoded-image folder name; rename one")


def architecture_of(backbone):
    """A backbone's architecture: its `backbones` entry's, or for the multi-task suite's backbone without one (the
    demo's ViT), `multitask.architecture`."""
    if backbone in config["backbones"]:
        return config["backbones"][backbone]["architecture"]
    return config["multitask"]["architecture"]


PIXEL_CFGS = {architectures.pixels_key_of(a): architectures.preprocess_cfg_of(a)
              for a in {*(b["architecture"] for b in config["backbones"].values()),
                        *([architecture_of(config["multitask"]["backbone"])] if "multitask" in config else [])}}


def pixels_files(backbone, roots):
    """The decoded images of the dataset directories ``roots`` for ``backbone``'s preprocessing, in that order
    (none when `images.decoded` is off: the scripts then read the JPEGs)."""
    if not IMAGES["decoded"]:
        return []
    key = architectures.pixels_key_of(architecture_of(backbone))
    return [f"{PIXELS}/{_source_name(r)}/{key}.npy" for r in roots]


# Results record the content keys of the checkpoints and datasets they were computed from (dawin.provenance);
# a change Snakemake's timestamps cannot see (a checkpoint replaced with `cp -p`, images replaced in place)
# stops the workflow here, before any job runs, naming the stale results and the `touch` that reruns them.
PROVENANCE = {"scan_datasets": True, **config.get("provenance", {})}


def _check_provenance():
    from dawin import provenance

    keys = provenance.Keys(f"{RESULTS}/.provenance-cache.json", datasets=PROVENANCE["scan_datasets"])
    _KEYS.append(keys)
    results = [p for pattern in ("logits/**/*.safetensors", "merged/**/*.safetensors", "wise_ft/**/*.safetensors",
                                 "heads/**/*.safetensors", "models/**/*.safetensors", "multitask/logits/*.safetensors",
                                 "multitask/*/provenance.json")
               for p in Path(RESULTS).glob(pattern)]
    # a decoded-image file's record is its JSON sidecar, written with it (an .npy deleted by hand leaves it behind)
    results += [p for p in Path(PIXELS).glob("**/*.json") if p.with_suffix(".npy").exists()]
    from dawin import identity

    for result in results:  # a result copied over another one's name stops even a run with nothing to do
        meta = provenance.safetensors_metadata(result) if result.suffix == ".safetensors" else None
        try:
            identity.check(result, meta or {}, required=False)
        except identity.IdentityError as error:
            raise WorkflowError(str(error)) from None
    changed = provenance.stale(results, keys)
    keys.save()
    if changed:
        listing = Path(RESULTS) / "stale.txt"
        names = [r.replace(".json", ".npy") if r.startswith(PIXELS) else r for r, _, _ in changed]
        listing.write_text("".join(f"{r}\n" for r in names))
        shown = "; ".join(f"{r} ({kind} {source})" for r, (_, kind, source) in zip(names[:3], changed))
        raise WorkflowError(
            f"{len(changed)} result(s) were computed from a checkpoint or dataset that has changed since without a "
            f"newer timestamp (e.g. replaced with `cp -p` or edited in place), so Snakemake would reuse them: {shown}"
            f"{' ...' if len(changed) > 3 else ''} (all listed in {listing}). Date the changed inputs as new, and "
            f"Snakemake reruns everything computed from them: `{provenance.touch_command(changed)}`, then the same "
            "command again")


_KEYS = []  # the content keys of this run's checks (dawin.provenance.Keys): the sha256 of each file computed once


# Not again in every cluster job's own Snakemake process, which parses the workflow too (a dataset scan each);
# is_main_process: exec mode DEFAULT, not REMOTE (snakemake/workflow.py, 9.27.1).
if workflow.is_main_process:
    _check_provenance()


EVAL_PARAMS = dict(
    batch_size=config["evaluation"]["batch_size"],
    num_workers=config["evaluation"]["num_workers"],
    autocast=config["evaluation"]["autocast"],
)


def configured_checkpoints():
    """(whose, path) of every checkpoint file the config names: each backbone's fine-tuned model,
    zero-shot weights, soup ingredients and Model Stock runs, and the multi-task suite's theta0 and experts."""
    out = []
    for name, bb in sorted(config["backbones"].items()):
        stock = bb.get("soups", {}).get("model_stock", [])
        stock = [stock["checkpoint"]] if isinstance(stock, dict) else stock
        out += [(f"backbone {name}", p) for p in (bb["finetuned"], bb["zeroshot"].get("weights"), *soup_ingredients(name), *stock)]
    if MT:
        out += [("multitask", p) for p in (MT.get("pretrained"), *task_files(MT_TASKS, "expert").values())]
    return out


def check_inputs_exist():
    """Configured checkpoint files and dataset directories must exist or be made by a rule of this workflow.

    Snakemake itself only notices a missing input when a job has to run: a path changed to a missing file or
    directory would leave the results built from the old one in place (the job that would rebuild them cannot
    run, so their files count as given) and the tables would be rebuilt from them. It must stop the workflow
    whatever is already built, naming the key and the path.
    """
    from dawin.runtime import blocked_folder

    blocked = blocked_folder(str(f) for r in workflow.rules for f in (*r.output, *r.log, *([r.benchmark] if r.benchmark else [])))
    if blocked:
        raise WorkflowError(f"{blocked} is a file where the workflow keeps a folder (its outputs go below it); move "
                            f"it away (mv {blocked} {blocked}.old) or delete it, then run the same command again")

    def missing(path):
        return path and not Path(path).exists() and not any(r.is_producer(path) for r in workflow.rules
                                                            if r.name != "unknown_target")

    for name, path in configured_checkpoints():
        if missing(path):
            raise WorkflowError(
                f"{name}: checkpoint {path} does not exist and no rule makes it; "
                "fetch or convert it first, or fix the path in the config"
            )
    if workflow.is_main_process and _KEYS:  # once per run, before any job: a converted checkpoint is the one converted
        from dawin import identity

        try:
            identity.check_converted(sorted({p for _, p in configured_checkpoints() if p}), _KEYS[0].file)
        except identity.IdentityError as error:
            raise WorkflowError(str(error)) from None
        finally:
            _KEYS[0].save()
    directories = {**{f"datasets.roots.{d}": DS["roots"][d] for d in EVAL_SETS},
                   **{f"multitask.tasks.{t}.{split}": spec[split]
                      for t, spec in sorted(config.get("multitask", {}).get("tasks", {}).items())
                      for split in ("test", "train") if split in spec}}
    for key, path in directories.items():
        if missing(path):
            raise WorkflowError(
                f"config {key}: dataset directory {path} does not exist and no rule of this workflow builds it; "
                "fix the path, or put the dataset there (the paper suite builds its datasets under "
                "paper.resources/data)"
            )


def unknown_target(wildcards):
    """The error for a target word that no rule makes, raised by unknown_target in the Snakefile; it names the closest
    target rules."""
    import difflib

    names = sorted(r.name for r in workflow.rules if r.name != "unknown_target")
    close = difflib.get_close_matches(wildcards.word, names, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise WorkflowError(f"no target {wildcards.word!r}: {hint}`snakemake --list-target-rules` lists the named "
                        "targets (tables, figures, all, ...)")


def source_path(ckpt, role, spec):
    """Where one source of a paper checkpoint lies once fetched (or built, for zero-shot heads)."""
    pres = config["paper"]["resources"]
    if "hf_repo" in spec:  # keyed by repository: shared by every checkpoint that uses it
        return f"{pres}/downloads/hf/{spec['hf_repo']}"
    if "head" in spec:
        return f"{RESULTS}/heads/{spec['head']['backbone']}/{spec['head']['dataset']}.safetensors"
    return f"{pres}/downloads/checkpoints/{ckpt}/{role}"


def expected_size(name):
    """A paper dataset's expected image and class counts from `paper.expected`, else {}. The robust sets must
    have an entry (check_paper_expected); for the multi-task sets an entry (replicas) replaces the published
    counts of dawin/inputs/data/multitask.json."""
    return config.get("paper", {}).get("expected", {}).get(name, {})


def check_paper_expected(datasets):
    """Every robust set that paper_dataset builds (ImageNet2p aside: its counts are paper.heldout) needs its
    image and class counts in `paper.expected`: the builders no longer assume the published ones. Checked
    when the workflow is parsed, so a missing entry stops it before any job runs, naming the key."""
    for name in datasets:
        entry = expected_size(name)
        missing = [k for k in ("images", "classes") if k not in entry]
        if missing:
            what = "is missing" if len(missing) == 2 else f"has no {missing[0]}"
            raise WorkflowError(
                f"config paper.expected.{name} {what}: "
                f"put the set's published image and class counts there, paper.expected.{name}: "
                "{images: <number of images>, classes: <number of classes>} (config/paper.yaml lists the "
                "published counts of every robust fine-tuning test set)"
            )


def check_staged_inputs(dag, download_rules):
    """The paper suite's check before its first job (onstart, workflow/rules/paper.smk): a run that would run one of
    ``download_rules`` stops, naming what is missing, unless it is `paper_inputs` (or asks for downloads by name):
    nothing after `paper_inputs` may touch the network, and a compute run would otherwise fail on a compute node
    after other jobs ran."""
    from dawin.inputs.paper_datasets import PAPER_INPUTS

    targets = {job.rule.name for job in dag.targetjobs}
    if "paper_inputs" in targets or targets <= set(download_rules):
        return
    pending = {}
    for job in dag.needrun_jobs():
        if job.rule.name in download_rules:
            pending.setdefault(job.rule.name, []).extend(sorted(job.output))
    if pending:
        listed = "; ".join(f"{rule} ({len(files)}): {', '.join(sorted(files)[:2])}{' ...' if len(files) > 2 else ''}"
                           for rule, files in sorted(pending.items()))
        raise WorkflowError(
            f"{sum(map(len, pending.values()))} staged input(s) of the paper suite are missing or outdated, per "
            f"download step: {listed}. This run would download them, but "
            "nothing after paper_inputs may touch the network (compute nodes have none). Run "
            f"`snakemake paper_inputs` with the same --configfile options (e.g. `{PAPER_INPUTS}`) "
            "where there is network (the login node), then this command again")


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


def finetune_run(wildcards):
    """The fine-tuning hyperparameters of a run: `finetune`, overridden by `finetune_runs.<run>`."""
    if wildcards.run == "finetuned":
        return {**config["demo"]["finetune"], "seed": config["seed"]}
    run = wildcards.run.removeprefix("runs/")
    if run not in config["demo"].get("finetune_runs", {}):
        raise WorkflowError(f"demo.finetune_runs has no run {run!r}")
    return {**config["demo"]["finetune"], "seed": config["seed"], **config["demo"]["finetune_runs"][run]}


def metrics_inputs(wildcards):
    bb = wildcards.backbone
    return {
        "logits": [logits_file(bb, m, d) for m in [*MODELS, "average"] for d in eval_sets(bb)],
        "temperatures": f"{RESULTS}/calibration/{bb}.json",
        "sweeps": sweep_files(bb, eval_sets(bb), "csv"),
        "sweep_samples": sweep_files(bb, TEST_SETS),
        "coefficients": coefficients_file(bb, "entropy"),
    }


# Multi-task merging: the tasks, the model pools (`all` and Table G's), theta0.
MT = config.get("multitask", {})
MT_TASKS = sorted(MT.get("tasks", {}))
POOLS = {"all": MT_TASKS, **MT.get("pools", {})}
MT_ALL_METHODS = ["pretrained", *MT["methods"], registry.GRID_SEARCH] if MT else []  # pool `all` (Table 6, Fig. 8)
MT_PRETRAINED = (MT["pretrained"] if "pretrained" in MT else model_file(MT["backbone"], "zeroshot")) if MT else None


def pool_eval_tasks(pool):
    """Pool `all` is evaluated on every task; Table G's pools on `pool_tasks` that are in the pool."""
    return MT_TASKS if pool == "all" else [t for t in MT["pool_tasks"] if t in POOLS[pool]]


def task_files(tasks, kind):
    """{task: the configured `kind` path (test, train, expert)} of the tasks that have one."""
    return {t: MT["tasks"][t][kind] for t in tasks if kind in MT["tasks"][t]}


def train_split_builder(wildcards):
    """The builder of a paper task's train split: that of the task's test set (config `paper.datasets`)."""
    builder = config["paper"]["datasets"].get(wildcards.task)
    if builder is None:
        raise ValueError(f"config: paper.datasets has no entry {wildcards.task}; the train split "
                         f"{wildcards.task}_train is built by the multi-task builder of that test set")
    return builder


def pool_inputs(pool, methods):
    """A pool job's files: theta0, the experts, the test sets, the evaluation tasks' logit caches (DaWin); every
    pool task's train split when one of `methods` learns from it (Fisher / RegMean, FusionBench's protocol)."""

    def inputs(wildcards):
        name = wildcards.get("pool", pool)
        tasks = POOLS[name]
        out = {"pretrained": MT_PRETRAINED, "experts": list(task_files(tasks, "expert").values()),
               "test": list(task_files(tasks, "test").values()),
               "logits": [f"{RESULTS}/multitask/logits/{t}.safetensors" for t in pool_eval_tasks(name)],
               "pixels": pixels_files(MT["backbone"], task_files(tasks, "test").values())}
        readers = [m for m in methods if m in registry.merging_methods_reading("train")]
        if readers:
            train = task_files(tasks, "train")
            missing = [t for t in tasks if t not in train]
            if missing:
                raise ValueError(f"config: {readers[0]} takes its examples from each task's train split; set "
                                 f"multitask.tasks.{missing[0]}.train (missing for {', '.join(missing)}) to the "
                                 "split's dataset directory")
            out["train"] = list(train.values())
        return out

    return inputs


# The premise checks (dawin.report.premises): robust fine-tuning on Table 2's backbone, multi-task merging on the
# pool of all tasks (when the suite has one).
PREMISE_BACKBONE = target_backbones("table2")[0]


def premise_inputs():
    inputs = {"code": code_of("premises.py"), "robust": f"{RESULTS}/metrics/{PREMISE_BACKBONE}.csv"}
    if MT:
        inputs |= {"multitask": f"{RESULTS}/multitask/metrics.csv",
                   "coefficients": f"{RESULTS}/multitask/all/dawin_coefficients.csv",
                   "correct": f"{RESULTS}/multitask/all/correct.safetensors"}
    return inputs
