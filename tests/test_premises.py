"""dawin.report.premises: each premise check on hand-made metric tables where it passes and where it fails, with
the numbers in its detail; the CSV round trip, the reproduction page's section and the seeds' grid."""

import re
from html import escape

import numpy as np
import pandas as pd
import pytest

from dawin.report import premises as P

TASKS = ["colour", "count", "round"]


def robust(zs_id=50.0, ft_id=80.0, zs_ood=60.0, ft_ood=55.0, backbone="tiny") -> pd.DataFrame:
    """metrics/<backbone>.csv: ZS and FT per test set and the OOD average (and another backbone's rows that the
    checks must not read)."""
    rows = [("zeroshot", "in", zs_id), ("finetuned", "in", ft_id), ("zeroshot", "ood_avg", zs_ood),
            ("finetuned", "ood_avg", ft_ood), ("wise_ft", "in", 99.0)]
    df = pd.DataFrame([dict(suite="demo", backbone=backbone, method=m, dataset=d, metric="accuracy", value=v)
                       for m, d, v in rows])
    other = df.assign(backbone="other", value=lambda d: 100 - d.value)
    return pd.concat([df, other], ignore_index=True)


def multitask(**changes) -> pd.DataFrame:
    """multitask/metrics.csv of pool `all` (and a Table G pool whose numbers must be ignored): every premise holds
    unless ``changes`` ({(method, task): accuracy}) breaks one; the average over tasks is recomputed."""
    acc = {("individual", t): 95.0 for t in TASKS}
    for m, v in (("pretrained", 40.0), ("weight_average", 50.0), ("regmean", 52.0), ("task_arithmetic", 55.0),
                 ("ties", 60.0), ("dawin", 70.0), ("task_arithmetic_grid", 65.0)):
        acc |= {(m, t): v + i for i, t in enumerate(TASKS)}
    acc |= {tuple(k.split("__")): v for k, v in changes.items()}
    rows = [dict(suite="demo", backbone="tiny", pool="all", method=m, dataset=t, metric="accuracy", value=v)
            for (m, t), v in acc.items()]
    for m in sorted({m for m, _ in acc if all((m, t) in acc for t in TASKS)}):
        rows.append(dict(suite="demo", backbone="tiny", pool="all", method=m, dataset="avg", metric="accuracy",
                         value=float(np.mean([acc[m, t] for t in TASKS]))))
    rows.append(dict(suite="demo", backbone="tiny", pool="count+round", method="dawin", dataset="count",
                     metric="accuracy", value=100.0))  # beats the expert, but in another pool
    rows.append(dict(suite="demo", backbone="tiny", pool="all", method="dawin", dataset="all", metric="eval_seconds",
                     value=1000.0))
    return pd.DataFrame(rows)


def coefficients(own=0.5) -> pd.DataFrame:
    """DaWin's mean coefficient per (task, expert): the own expert ``own``, the others share the rest."""
    return pd.DataFrame([dict(task=t, expert=e, coefficient=own if e == t else (1 - own) / (len(TASKS) - 1))
                         for t in TASKS for e in TASKS])


def correct(same=False) -> dict:
    """Pool `all`'s per-sample correctness of RegMean and weight averaging: identical, or differing on 3 images."""
    rng = np.random.default_rng(0)
    wa = {t: rng.random(20) < 0.5 for t in TASKS}
    rm = {t: c.copy() for t, c in wa.items()}
    if not same:
        rm["count"][:3] = ~rm["count"][:3]
    return {("tiny", "weight_average"): wa, ("tiny", "regmean"): rm}


def checks(**kw) -> pd.DataFrame:
    args = dict(robust=robust(), multitask=multitask(), backbone="tiny", id_dataset="in",
                coefficients=coefficients(), correct=correct(), lam=0.3)
    return P.premise_rows(**{**args, **kw}).set_index("check")


def test_every_premise_passes_on_a_world_that_keeps_them():
    rows = checks()
    assert list(rows.index) == list(P.CHECKS)
    assert rows.passed.tolist() == [True] * len(P.CHECKS)
    assert rows.loc["ft_above_zs_id", "detail"] == "tiny: finetuned 80.00 vs zeroshot 50.00 on in (+30.00)"
    assert rows.loc["ft_above_zs_id", "margin"] == 30.0
    assert rows.loc["zs_above_ft_ood", "detail"] == "tiny: zeroshot 60.00 vs finetuned 55.00 on ood_avg (+5.00)"
    # the smallest lead of an expert: round, individual 95 vs dawin 72 (the grid's 67 is below)
    assert rows.loc["expert_best_on_own_task", "detail"] == (
        "best on all 3 tasks; smallest lead round: individual 95.00 vs dawin 72.00 (+23.00)")
    assert rows.loc["task_arithmetic_above_pretrained", "premise"].startswith(
        "Multi-task: task arithmetic (lambda 0.3) above pre-trained")
    assert rows.loc["task_arithmetic_above_pretrained", "detail"] == (
        "task_arithmetic (lambda 0.3) 56.00 vs pretrained 41.00 on avg (+15.00)")
    assert rows.loc["weight_average_above_pretrained", "margin"] == 10.0
    assert rows.loc["regmean_differs_from_weight_average", "margin"] == 3
    assert rows.loc["regmean_differs_from_weight_average", "detail"].startswith(
        "correctness differs on 3 of 60 test images of 3 tasks; accuracies differ on 3 of 3 tasks "
        "(average regmean 53.00, weight_average 51.00)")
    assert rows.loc["own_expert_largest_coefficient", "margin"] == pytest.approx(0.25)
    assert "largest on all 3 tasks" in rows.loc["own_expert_largest_coefficient", "detail"]


def test_robust_premises_fail_with_their_numbers():
    rows = checks(robust=robust(ft_id=45.5, ft_ood=61.25))
    assert not rows.loc["ft_above_zs_id", "passed"] and not rows.loc["zs_above_ft_ood", "passed"]
    assert rows.loc["ft_above_zs_id", "detail"] == "tiny: finetuned 45.50 vs zeroshot 50.00 on in (-4.50)"
    assert rows.loc["zs_above_ft_ood", "detail"] == "tiny: zeroshot 60.00 vs finetuned 61.25 on ood_avg (-1.25)"
    assert rows.loc["zs_above_ft_ood", "margin"] == -1.25
    assert not checks(robust=robust(ft_id=50.0)).loc["ft_above_zs_id", "passed"]  # strictly above: a tie fails
    # the multi-task checks are untouched
    assert rows.drop(list(P.ROBUST_CHECKS)).passed.all()


def test_an_expert_beaten_on_its_own_task_fails_and_names_the_winner():
    rows = checks(multitask=multitask(fisher__count=97.5, ties__round=96.0))
    assert not rows.loc["expert_best_on_own_task", "passed"]
    assert rows.loc["expert_best_on_own_task", "detail"] == (
        "beaten on 2 of 3 tasks: count: individual 95.00 vs fisher 97.50 (-2.50); "
        "round: individual 95.00 vs ties 96.00 (-1.00)")
    assert rows.loc["expert_best_on_own_task", "margin"] == -2.5
    # a tie counts as best
    assert checks(multitask=multitask(dawin__count=95.0)).loc["expert_best_on_own_task", "passed"]


def test_static_merges_below_pretrained_fail():
    rows = checks(multitask=multitask(pretrained__colour=70.0, pretrained__count=70.0, pretrained__round=70.0))
    for check, method in (("task_arithmetic_above_pretrained", "task_arithmetic (lambda 0.3) 56.00"),
                          ("weight_average_above_pretrained", "weight_average 51.00")):
        assert not rows.loc[check, "passed"]
        assert rows.loc[check, "detail"].startswith(f"{method} vs pretrained 70.00 on avg")
    assert rows.loc["weight_average_above_pretrained", "margin"] == -19.0


def test_regmean_equal_to_the_weight_average_fails():
    same = multitask(**{f"regmean__{t}": 50.0 + i for i, t in enumerate(TASKS)})
    rows = checks(multitask=same, correct=correct(same=True))
    assert not rows.loc["regmean_differs_from_weight_average", "passed"]
    assert rows.loc["regmean_differs_from_weight_average", "margin"] == 0
    assert rows.loc["regmean_differs_from_weight_average", "detail"] == (
        "correctness differs on 0 of 60 test images of 3 tasks; accuracies differ on 0 of 3 tasks "
        "(average regmean 51.00, weight_average 51.00)")
    # per-sample correctness is the finer test: equal accuracies, different images right, passes
    assert checks(multitask=same, correct=correct()).loc["regmean_differs_from_weight_average", "passed"]
    # without correctness, the accuracies decide
    no_samples = checks(multitask=same, correct=None).loc["regmean_differs_from_weight_average"]
    assert not no_samples.passed and "no per-sample correctness given" in no_samples.detail


def test_an_expert_without_the_largest_coefficient_on_its_task_fails():
    coef = coefficients()
    coef.loc[(coef.task == "round") & (coef.expert == "colour"), "coefficient"] = 0.6
    rows = checks(coefficients=coef)
    assert not rows.loc["own_expert_largest_coefficient", "passed"]
    assert rows.loc["own_expert_largest_coefficient", "detail"] == (
        "another expert larger on 1 of 3 tasks: round: own 0.500 vs colour 0.600")
    assert rows.loc["own_expert_largest_coefficient", "margin"] == pytest.approx(-0.1)
    # every expert ties, which counts as largest
    assert checks(coefficients=coef.assign(coefficient=0.3)).loc["own_expert_largest_coefficient", "passed"]


def test_missing_numbers_are_not_checked_and_a_suite_without_multitask_has_no_such_rows():
    rows = checks(multitask=multitask().query("method != 'regmean'"))
    assert pd.isna(rows.loc["regmean_differs_from_weight_average", "passed"])
    assert rows.loc["regmean_differs_from_weight_average", "detail"] == (
        "not checked: no accuracy of both regmean and weight_average")
    robust_only = P.premise_rows(robust(), None, backbone="tiny", id_dataset="in")
    assert robust_only.check.tolist() == list(P.ROBUST_CHECKS)
    assert pd.isna(checks(robust=robust(backbone="ViT-B-32")).loc["ft_above_zs_id", "passed"])
    with pytest.raises(ValueError, match="columns"):
        P.premise_rows(robust(), multitask(), backbone="tiny", id_dataset="in", coefficients=pd.DataFrame({"x": [1]}))


def test_premises_round_trip_through_the_csv_and_reach_the_page(tmp_path):
    from dawin.report.reference import reproduction_html, reproduction_summary

    rows = P.premise_rows(robust(ft_id=45.5), multitask().query("method != 'regmean'"), backbone="tiny",
                          id_dataset="in", coefficients=coefficients(), correct=correct(), lam=0.3)
    P.write(rows, tmp_path / "premises.csv")
    back = P.read(tmp_path / "premises.csv")
    assert back.passed.tolist()[:3] == [False, True, True] and pd.isna(back.passed.iloc[5])
    assert back.detail.tolist() == rows.detail.tolist()
    page = reproduction_summary({}, P.printed(back))
    lines = page.splitlines()
    at = lines.index("## Premise checks")
    assert [c.strip() for c in lines[at + 4].split("|")[1:-1]] == ["premise", "result", "numbers"]
    assert [c.strip() for c in lines[at + 6].split("|")[1:-1]] == [
        "Robust fine-tuning: FT above ZS on ID", "FAIL", "tiny: finetuned 45.50 vs zeroshot 50.00 on in (-4.50)"]
    assert re.search(r"\| *not checked *\| *not checked: no accuracy of both regmean and weight_average", page)
    page_html = reproduction_html({}, P.printed(back))
    assert "<h2>Premise checks</h2>" in page_html and "<td>FAIL</td>" in page_html and escape(P.NOTE) in page_html
    with pytest.raises(ValueError, match="not a premises table"):
        pd.DataFrame({"check": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
        P.read(tmp_path / "bad.csv")


def test_seeds_report_every_check_under_each_seed():
    by_seed = {0: P.premise_rows(robust(), multitask(), backbone="tiny", id_dataset="in", coefficients=coefficients(),
                                 correct=correct(), lam=0.3),
               3: P.premise_rows(robust(ft_ood=70.0), multitask(), backbone="tiny", id_dataset="in",
                                 coefficients=coefficients(), correct=correct(same=True), lam=0.3)}
    grid = P.seed_grid(by_seed)
    assert list(grid.index) == [0, 3] and list(grid.columns) == list(P.CHECKS)
    assert grid.loc[0, "zs_above_ft_ood"] == "pass (+5.00)" and grid.loc[3, "zs_above_ft_ood"] == "FAIL (-10.00)"
    assert grid.loc[0, "regmean_differs_from_weight_average"] == "pass (3 images)"
    assert grid.loc[3, "regmean_differs_from_weight_average"] == "FAIL (0 images)"
    assert grid.loc[0, "own_expert_largest_coefficient"] == "pass (+0.250)"
    tidy = P.seed_rows(by_seed)
    assert list(tidy.columns) == ["seed", *P.COLUMNS] and len(tidy) == 2 * len(P.CHECKS)
    page = P.seed_markdown(by_seed, [0, 3])
    assert "## Premise checks" in page and "### Seed 3" in page
    assert "tiny: zeroshot 60.00 vs finetuned 70.00 on ood_avg (-10.00)" in page
    assert "- `task_arithmetic_above_pretrained`: Multi-task: task arithmetic (lambda 0.3)" in page
