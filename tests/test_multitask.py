"""The multi-task experiment helpers: pools from classifier files, merging by registry name, evaluation."""

import pytest
import torch

from dawin.inputs import models
from dawin.inputs.datasets import DatasetError, ImageFolderDataset, load_dataset, write_dataset
from dawin.demo.train import seeded_clip
from dawin.merging.multitask import (correct_predictions, evaluate, load_pool, method_data, method_options,
                                     run_method)

ARCH = "dawin-tiny-rn"


def _expert(path, seed, n_classes=3, bias=0.0):
    clip = seeded_clip(ARCH, seed)
    head = torch.randn(n_classes, 64, generator=torch.Generator().manual_seed(seed))
    clf = models.ImageClassifier.from_clip(clip, ARCH, head)
    with torch.no_grad():
        clf.head.bias.fill_(bias)
    clf.save(path)
    return clf


@pytest.fixture
def files(tmp_path):
    paths = {"pre": tmp_path / "pre.safetensors", "a": tmp_path / "a.safetensors", "b": tmp_path / "b.safetensors"}
    clfs = {k: _expert(p, seed) for (k, p), seed in zip(paths.items(), (0, 1, 2))}
    return {k: str(p) for k, p in paths.items()}, clfs


def test_pool_holds_the_towers_and_frozen_heads(files):
    paths, clfs = files
    pool = load_pool(paths["pre"], {"a": paths["a"], "b": paths["b"]})
    assert pool.tasks == ["a", "b"]
    for k, v in clfs["a"].visual.state_dict().items():
        assert torch.equal(pool.experts["a"][k], v)
    assert torch.equal(pool.heads["b"], clfs["b"].head.weight)
    state, seconds = run_method("pretrained", pool, None)
    assert seconds >= 0 and all(torch.equal(state[k], v) for k, v in clfs["pre"].visual.state_dict().items())
    avg, _ = run_method("weight_average", pool, None)
    key = next(k for k, v in avg.items() if v.is_floating_point())
    assert torch.allclose(avg[key], (pool.experts["a"][key] + pool.experts["b"][key]) / 2, atol=1e-6)


def test_the_count_ties_ranks_over_comes_from_the_pickled_sources(tmp_path):
    """Issue 24 item 11: experts from task_vectors' pickles rank TIES over the whole pickled encoder's entries (the
    converter's source_encoder_entries); vision-only experts over the tower; mixed or stale files are refused."""
    def save(name, seed, **meta):
        clf = models.ImageClassifier.from_clip(seeded_clip(ARCH, seed), ARCH, torch.randn(3, 64))
        with torch.no_grad():
            clf.head.bias.zero_()
        clf.save(tmp_path / name, **meta)
        return str(tmp_path / name)

    tv = dict(source_format="pickled-modules", source_encoder_entries="1234567", source_outside_visual_sha256="ab")
    pre, a, b = save("pre", 0, **tv), save("a", 1, **tv), save("b", 2, **tv)
    assert load_pool(pre, {"a": a, "b": b}).trim_entries == 1234567
    assert load_pool(save("p2", 0), {"a": save("a2", 1), "b": save("b2", 2)}).trim_entries is None
    with pytest.raises(ValueError, match="mixes experts from pickled modules"):
        load_pool(pre, {"a": a, "b": save("fb", 3, source_format="hf-clip-vision")})
    with pytest.raises(ValueError, match="converted by an older converter"):
        load_pool(pre, {"a": a, "b": save("old", 3, source_format="pickled-modules")})
    with pytest.raises(ValueError, match="differ outside the image tower"):
        load_pool(pre, {"a": a, "b": save("text", 3, **{**tv, "source_outside_visual_sha256": "cd"})})


def test_an_expert_with_the_weights_of_another_or_of_theta0_is_an_error_naming_both(tmp_path, files):
    # issue 24, item 3: the mirror's Drive file for the SVHN expert held the MNIST expert; nothing noticed
    paths, clfs = files
    twin = tmp_path / "svhn.safetensors"
    head = torch.randn(3, 64, generator=torch.Generator().manual_seed(7))  # its own head: only the tower is copied
    models.ImageClassifier.from_clip(seeded_clip(ARCH, 1), ARCH, head).save(twin)
    with pytest.raises(ValueError, match=rf"the multi-task pool: the a expert \({paths['a']}\) and the svhn expert "
                                         rf"\({twin}\) hold identical image towers"):
        load_pool(paths["pre"], {"a": paths["a"], "b": paths["b"], "svhn": str(twin)})
    with pytest.raises(ValueError, match=rf"theta0 \({paths['pre']}\) and the b expert \({paths['pre']}\) hold identical"):
        load_pool(paths["pre"], {"a": paths["a"], "b": paths["pre"]})


def test_expert_with_a_bias_is_refused(tmp_path, files):
    paths, _ = files
    _expert(tmp_path / "biased.safetensors", 3, bias=0.5)
    with pytest.raises(ValueError, match="bias-free"):
        load_pool(paths["pre"], {"a": str(tmp_path / "biased.safetensors")})


def test_evaluate_counts_correct_predictions(tmp_path, files):
    paths, clfs = files
    pool = load_pool(paths["pre"], {"a": paths["a"]})
    root = tmp_path / "data"
    from PIL import Image
    items = []
    for i in range(6):
        (root / "c").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (40 * i, 10, 200 - 30 * i)).save(root / "c" / f"{i}.png")
        items.append((f"c/{i}.png", i % 3))
    write_dataset(root, "toy", ["x", "y", "z"], ["a {c}."], items)
    data = load_dataset(str(root), transform=models.preprocess(pool.encoder()))
    x, y = torch.stack([data[i][0] for i in range(len(data))]), torch.as_tensor(data.labels)
    with torch.no_grad():
        expected = float((clfs["a"](x).argmax(-1) == y).double().mean() * 100)
    got = evaluate(pool, pool.experts["a"], ["a"], {"a": str(root)}, batch_size=4)
    assert got == {"a": pytest.approx(expected)}
    with torch.no_grad():  # per sample, in the test set's order: what the tables' intervals resample
        right = (clfs["a"](x).argmax(-1) == y).tolist()
    assert correct_predictions(pool, pool.experts["a"], ["a"], {"a": str(root)}, batch_size=4)["a"].tolist() == right


def _toy(root, n):
    from PIL import Image
    (root / "c").mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (32, 32), (20 * i, 10, 100)).save(root / "c" / f"{i}.png")
    write_dataset(root, "toy", ["x", "y"], ["a {c}."], [(f"c/{i}.png", i % 2) for i in range(n)])
    return str(root)


def test_methods_learn_from_the_right_split_read_lazily(tmp_path):
    test = {t: _toy(tmp_path / f"{t}_test", 5) for t in ("a", "b")}
    train = {t: _toy(tmp_path / f"{t}_train", 7) for t in ("a", "b")}
    visual = models.create_clip(ARCH).visual
    # AdaMerging: the whole unlabelled test set of every task, as datasets (read per step, never stacked)
    for name in ("adamerging_task", "adamerging_layer", "adamerging_pp_task", "adamerging_pp_layer"):
        data = method_data(name, ["a", "b"], test=test, train=train, visual=visual)
        assert all(isinstance(d, ImageFolderDataset) and len(d) == 5 for d in data.values())
        assert {str(d.root) for d in data.values()} == set(test.values())
    # Fisher / RegMean: the train split of every task
    for name in ("fisher", "regmean"):
        data = method_data(name, ["a", "b"], test=test, train=train, visual=visual)
        assert {t: (str(d.root), len(d)) for t, d in data.items()} == {t: (train[t], 7) for t in train}
        assert data["a"][0][0].shape == (3, 32, 32)
        # no silent fallback to the test images: the error names the config key to set
        with pytest.raises(DatasetError, match=r"multitask\.tasks\.b\.train"):
            method_data(name, ["a", "b"], test=test, train={"a": train["a"]}, visual=visual)
    assert method_data("task_arithmetic", ["a", "b"], test=test, train={}, visual=visual) is None
    # the config seed reaches the methods that draw images; method options win
    assert method_options("fisher", {"n_examples": 256}, seed=3, num_workers=2) == {"n_examples": 256, "seed": 3}
    assert method_options("adamerging_layer", {"steps": 500, "seed": 1}, seed=3, num_workers=2) == {
        "steps": 500, "seed": 1, "num_workers": 2}
    assert method_options("ties", {"lam": 0.3}, seed=3) == {"lam": 0.3}


def test_grid_search_picks_the_best_summed_accuracy_and_the_smaller_lambda_on_ties(monkeypatch):
    from dawin.merging import multitask
    summed = {0.1: (50.0, 10.0), 0.2: (30.0, 40.0), 0.3: (40.0, 30.0), 0.4: (20.0, 20.0)}  # 0.2 and 0.3 tie at 70

    def correct(pool, state, tasks, roots, **kw):  # 10 images per task, the first acc/10 of them right
        return {t: torch.arange(10) < a / 10 for t, a in zip(tasks, summed[state["lam"]])}

    monkeypatch.setattr(multitask, "run_method", lambda name, pool, data, lam: ({"lam": lam}, 0.0))
    monkeypatch.setattr(multitask, "correct_predictions", correct)
    best, chosen = multitask.task_arithmetic_grid(None, list(summed), ["a", "b"], {})
    assert best == 0.2 and multitask.accuracies(chosen) == {"a": 30.0, "b": 40.0}
    rows, per_sample = multitask.method_rows(multitask.GRID_SEARCH, None, data=None, options={}, tasks=["a", "b"],
                                             roots={}, grid=list(summed))
    assert {t: c.tolist() for t, c in per_sample.items()} == {t: c.tolist() for t, c in chosen.items()}  # its lambda's
    got = {(r["dataset"], r["metric"]): r["value"] for r in rows}
    assert got[("all", "lambda")] == 0.2 and got[("a", "accuracy")] == 30.0 and got[("all", "merge_seconds")] == 0.0
    assert got[("all", "eval_seconds")] >= 0 and {r["method"] for r in rows} == {multitask.GRID_SEARCH}
    with pytest.raises(ValueError, match="task_arithmetic_grid"):
        multitask.task_arithmetic_grid(None, [], ["a"], {})


def test_a_pools_share_of_the_experts_pass_is_its_fraction_of_the_experts():
    from dawin.merging.multitask import expert_share_seconds
    assert expert_share_seconds({"expert_seconds": "8.0", "experts": "a,b,c,d"}, 2) == 4.0


def test_dawin_rows_evaluate_the_mixture_mean_merge_and_add_the_experts_share(tmp_path, files):
    from dawin.merging.dawin_multitask import MultiTaskGroupedEvaluator, expert_logits, merged_encoder_state
    from dawin.merging.multitask import dawin_rows
    from dawin.tensorio import save_tensors
    paths, _ = files
    pool = load_pool(paths["pre"], {"a": paths["a"], "b": paths["b"]})
    root = tmp_path / "data"
    from PIL import Image
    (root / "c").mkdir(parents=True)
    for i in range(9):
        Image.new("RGB", (32, 32), (25 * i, 200 - 20 * i, 60)).save(root / "c" / f"{i}.png")
    write_dataset(root, "toy", ["x", "y", "z"], ["a {c}."], [(f"c/{i}.png", i % 3) for i in range(9)])
    from dawin.inputs.datasets import load_dataset
    data = load_dataset(str(root), transform=models.preprocess(pool.encoder()))
    za, zb = expert_logits(pool, "a", data, batch_size=4)
    cache = tmp_path / "a.safetensors"
    save_tensors(cache, {"a": za, "b": zb}, {"experts": "a,b,c,d", "expert_seconds": "6.0"})
    evaluator = MultiTaskGroupedEvaluator(batch_size=4)
    rows, means, correct = dawin_rows(pool, evaluator, ["a"], {"a": str(cache)}, {"a": str(root)}, n_components=1,
                                      seed=0)
    # one component: every sample gets the Dirichlet mean, the mean of the (clipped) entropy-softmax rows
    mean = {m["expert"]: m["coefficient"] for m in means}
    assert set(mean) == {"a", "b"} and sum(mean.values()) == pytest.approx(1.0)
    got = {(r["dataset"], r["metric"]): r["value"] for r in rows}
    fitted = torch.tensor([mean["a"], mean["b"]], dtype=torch.float64)
    expected = evaluate(pool, merged_encoder_state(pool, fitted.numpy()), ["a"], {"a": str(root)}, batch_size=4)
    assert got[("a", "accuracy")] == pytest.approx(expected["a"])
    assert correct["a"].dtype == torch.bool and len(correct["a"]) == 9
    assert float(correct["a"].double().mean() * 100) == got[("a", "accuracy")]
    assert got[("all", "eval_seconds")] >= 3.0  # the pool's half of the cached experts' 6 s, plus its own time
