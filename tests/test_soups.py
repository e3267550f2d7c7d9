"""dawin.robust.soups: uniform soup, greedy soup and Model Stock of tiny classifier files, against direct computations."""

from pathlib import Path

import pytest
import torch
import yaml

from dawin.inputs import models
from dawin.robust import soups
from dawin.report.reference import load_second_reference

ROOT = Path(__file__).resolve().parents[1]

ARCH = "dawin-tiny-rn"


def _classifier(seed: int, head: torch.Tensor) -> models.ImageClassifier:
    torch.manual_seed(seed)
    clf = models.ImageClassifier.from_clip(models.create_clip(ARCH), ARCH, head)
    with torch.no_grad():
        clf.head.bias.normal_()
    return clf


@pytest.fixture(scope="module")
def heads():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 64, generator=g)
    e = torch.randn(3, 64, generator=g)
    far = torch.randn(3, 64, generator=g)
    # ingredients 0 and 1 sit symmetrically around the target (their mean is it); ingredient 2 is far off
    return target, [target + e, target - e, target + 5 * far]


@pytest.fixture(scope="module")
def files(tmp_path_factory, heads):
    root = tmp_path_factory.mktemp("soups")
    paths = []
    for i, head in enumerate(heads[1]):
        path = root / f"run{i}.safetensors"
        _classifier(10 + i, head).save(path)
        paths.append(path)
    pre = root / "pretrained.safetensors"
    _classifier(99, torch.randn(3, 64, generator=torch.Generator().manual_seed(5))).save(pre)
    return pre, paths


def _sd(path):
    return models.ImageClassifier.load(path).state_dict()


def _assert_mean_of(model, paths, atol=1e-6):
    sds = [_sd(p) for p in paths]
    got = model.state_dict()
    assert set(got) == set(sds[0])
    n_float = 0
    for k, v in got.items():
        if v.is_floating_point():
            want = torch.stack([sd[k].double() for sd in sds]).mean(0)
            torch.testing.assert_close(v.double(), want, rtol=0, atol=atol, msg=k)
            n_float += 1
        else:
            assert torch.equal(v, sds[0][k]), k  # integer buffers (BatchNorm counters) from the first run
    assert n_float > 100


def test_ingredients_differ(files):
    _, paths = files
    a, b = _sd(paths[0]), _sd(paths[1])
    assert not torch.equal(a["visual.conv1.weight"], b["visual.conv1.weight"])
    assert not torch.equal(a["head.weight"], b["head.weight"])


def test_uniform_soup_is_mean_of_state_dicts(files):
    _, paths = files
    soup = soups.uniform_soup(paths)
    assert isinstance(soup, models.ImageClassifier) and soup.architecture == ARCH
    _assert_mean_of(soup, paths)
    assert soup.state_dict()["head.weight"].dtype == torch.float32


def test_uniform_soup_of_two(files):
    _, paths = files
    _assert_mean_of(soups.uniform_soup(paths[:2]), paths[:2])


def test_uniform_soup_needs_two(files):
    with pytest.raises(ValueError, match="at least two"):
        soups.uniform_soup(files[1][:1])




def _scorer(target, seen):
    def accuracy_of(clf):  # deterministic "held-out accuracy": closeness of the head to the target
        seen.append({k: clf.state_dict()[k].detach().double().clone() for k in ("head.weight", "visual.conv1.weight")})
        return 100.0 - float((clf.head.weight.detach().double() - target.double()).norm())
    return accuracy_of


def test_greedy_soup_returns_mean_of_chosen(files, heads):
    """What holds whatever the soup decisions: individual scores, history, and the final soup's weights."""
    target, hs = heads
    _, paths = files
    seen = []
    accuracy_of = _scorer(target, seen)
    model, info = soups.greedy_soup(paths, accuracy_of)
    names = [str(p) for p in paths]
    single = info["individual_accuracy"]
    assert set(single) == set(names)
    for name, h in zip(names, hs):
        assert single[name] == pytest.approx(100.0 - float((h - target).norm()), abs=1e-4)
    assert single[names[2]] < min(single[names[0]], single[names[1]])
    assert len(seen) == 3 + 2  # each ingredient alone, then one evaluation per further candidate
    hist = info["history"]
    assert [h["candidate"] for h in hist][0] == max(single, key=single.get)  # the best one starts the soup
    assert hist[0]["added"] and hist[-1]["candidate"] == names[2]  # the worst one is tried last
    assert info["ingredients"] == [h["candidate"] for h in hist if h["added"]]
    _assert_mean_of(model, info["ingredients"])


def test_greedy_soup_skips_the_harmful_ingredient(files, heads):
    target, hs = heads
    _, paths = files
    seen = []
    model, info = soups.greedy_soup(paths, _scorer(target, seen))
    names = [str(p) for p in paths]
    sds = [_sd(p) for p in paths]
    # the candidate soups evaluated are the uniform means of their ingredients
    for got, members in zip(seen[3:], ([0, 1], [0, 1, 2])):
        for k in got:
            want = torch.stack([sds[i][k].double() for i in members]).mean(0)
            torch.testing.assert_close(got[k], want, rtol=0, atol=1e-6, msg=k)
    # {0, 1} has the target head exactly: better than either alone; adding 2 makes it worse
    assert [h["added"] for h in info["history"]] == [True, True, False]
    assert info["history"][1]["accuracy"] == pytest.approx(100.0, abs=1e-4)
    assert set(info["ingredients"]) == {names[0], names[1]}
    _assert_mean_of(model, paths[:2])


def test_model_stock_of_files_equals_the_state_dict_arithmetic(files):
    pre, paths = files
    model, ratios = soups.model_stock(pre, paths[:2])
    want, want_ratios = soups.model_stock_state(_sd(pre), [_sd(p) for p in paths[:2]])
    got = model.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=1e-6, msg=k)
    assert ratios == pytest.approx(want_ratios)
    assert all(0.0 <= t <= 1.0 for t in ratios.values())
    # t = 2 cos / (1 + cos) for the head, computed by hand from the two task vectors
    w0 = _sd(pre)["head.weight"].double().flatten()
    d1, d2 = (_sd(p)["head.weight"].double().flatten() - w0 for p in paths[:2])
    cos = max(float(d1 @ d2 / (d1.norm() * d2.norm())), 0.0)
    assert ratios["head.weight"] == pytest.approx(2 * cos / (1 + cos), abs=1e-9)


def test_model_stock_needs_two_runs(files):
    pre, paths = files
    with pytest.raises(ValueError, match="at least two"):
        soups.model_stock(pre, paths[:1])


def test_paper_suite_soups_use_all_72_model_soups_runs():
    """model-soups' main.py soups all its runs: NUM_MODELS = 72, model_0..model_71 (model_0 included, the LP
    initialisation the others start from); the paper suite's uniform and greedy soups use the same pool."""
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    ing = paper["backbones"]["ViT-B-32"]["soups"]["ingredients"]
    assert (ing["first"], ing["last"]) == (0, 71)
    runs = [ing["pattern"].format(i=i) for i in range(ing["first"], ing["last"] + 1)]  # as common.smk expands it
    assert len(runs) == 72
    series = paper["paper"]["checkpoint_series"]["soup-ViT-B-32"]
    assert series["count"] == 72 and series["url"].endswith("/v0.0.2/model_{i}.pt")
    made = {f"resources/paper/checkpoints/soup-ViT-B-32-{i}.safetensors" for i in range(series["count"])}
    assert set(runs) == made  # every converted model-soups run, model_0 included
    # the second reference the paper suite shows beside Table 2 says the same (its caption note)
    assert paper["model_soups_reference"] is True
    second = load_second_reference(ROOT / "workflow" / "resources" / "model_soups_reference.yaml")
    assert second.attrs["runs"] == len(runs)
    assert "all 72 model-soups runs" in second.attrs["note"]


def test_two_runs_with_identical_weights_are_an_error_naming_both(tmp_path, files):
    # issue 24, item 3: a run file that holds another run's weights (a mirror or Drive file standing in for another)
    pre, paths = files
    twin = tmp_path / "run1-copy.safetensors"
    clf = models.ImageClassifier.load(paths[1])
    clf.save(twin, source="another upstream file")  # other metadata, same tensors
    message = rf"run {paths[1]} and run {twin} hold identical image towers \(all \d+ tensors"
    with pytest.raises(ValueError, match=message):
        soups.uniform_soup([paths[0], paths[1], twin])
    with pytest.raises(ValueError, match=message):
        soups.greedy_soup([paths[0], paths[1], twin], lambda clf: 0.5)
    with pytest.raises(ValueError, match=rf"Model Stock: the pre-trained model \({pre}\) and run {tmp_path}"):
        soups.model_stock(pre, [paths[0], _copy(pre, tmp_path / "run-is-pre.safetensors")])
    # distinct towers pass, whatever their heads
    assert soups.uniform_soup(paths) is not None


def _copy(path, dest):
    models.ImageClassifier.load(path).save(dest)
    return dest
