"""AdaMerging(++), OPCM and multi-task DaWin on a tiny pool (dawin-tiny-rn, 32 px, 64-d features)."""

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dawin.method.expertise import entropy
from dawin.merging import adamerging, dawin_multitask, opcm
from dawin.merging.pool import ModelPool
from dawin.inputs.models import create_clip
from dawin.method.weights import add_task_vectors


def _pool(n_tasks: int = 2, n_classes: int = 5, seed: int = 0) -> ModelPool:
    """Experts = theta0 + parameter noise (buffers unchanged); heads = scaled random unit rows."""
    torch.manual_seed(seed)
    visual = create_clip("dawin-tiny-rn").visual
    theta0 = {k: v.clone() for k, v in visual.state_dict().items()}
    experts, heads = {}, {}
    for j in range(n_tasks):
        sd = {k: v.clone() for k, v in theta0.items()}
        for name, p in visual.named_parameters():
            scale = float(p.detach().std()) + 1e-2 if p.numel() > 1 else 1e-2
            sd[name] = theta0[name] + 0.1 * scale * torch.randn_like(p)
        experts[f"t{j}"] = sd
        heads[f"t{j}"] = 5.0 * F.normalize(torch.randn(n_classes, 64), dim=-1)
    return ModelPool("dawin-tiny-rn", theta0, experts, heads)


def _param_names(pool: ModelPool) -> list[str]:
    return [n for n, _ in pool.encoder().named_parameters()]


def _assert_state_equal(got, expected, atol=1e-6):
    assert set(got) == set(expected)
    for k in expected:
        assert got[k].dtype == expected[k].dtype, k
        assert torch.allclose(got[k], expected[k], atol=atol), k


class TensorSet(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x
        self.labels = torch.zeros(len(x), dtype=torch.long)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 0

    projection = staticmethod(lambda z: z)


@pytest.fixture(scope="module")
def pool2():
    return _pool(2)


@pytest.fixture(scope="module")
def data2():
    g = torch.Generator().manual_seed(3)
    return {"t0": torch.randn(16, 3, 32, 32, generator=g), "t1": torch.randn(16, 3, 32, 32, generator=g)}


# ---------------------------------------------------------------- AdaMerging


def test_task_wise_adamerging_lowers_entropy_and_returns_theta0_plus_lambda_tau(pool2, data2):
    state, info = adamerging.merge_task_wise(pool2, data2, steps=8, batch_size=16, lr=1e-2, device="cpu")
    assert info.granularity == "task" and info.tasks == ["t0", "t1"] and len(info.losses) == 8
    # first loss = summed mean entropy of task arithmetic at 0.3, computed through the ordinary classifier
    ta = add_task_vectors(pool2.pretrained, list(pool2.task_vectors().values()), [0.3, 0.3])
    with torch.no_grad():
        expected0 = sum(float(entropy(pool2.classifier(t, ta)(data2[t])).mean()) for t in ["t0", "t1"])
    assert info.losses[0] == pytest.approx(expected0, rel=1e-4)
    assert info.losses[-1] < info.losses[0]
    assert info.lambdas.shape == (2,) and not torch.allclose(info.lambdas, torch.full((2,), 0.3))
    assert ((info.lambdas >= 0) & (info.lambdas <= 1)).all()
    # the returned encoder is theta0 + sum_j lambda_j tau_j with the reported lambdas (buffers: theta0)
    expected = add_task_vectors(pool2.pretrained, list(pool2.task_vectors().values()), info.lambdas.tolist())
    _assert_state_equal(state, expected)


def test_layer_wise_adamerging_has_one_lambda_per_task_and_tensor(pool2, data2):
    state, info = adamerging.merge_layer_wise(pool2, data2, steps=3, batch_size=8, lr=1e-2, device="cpu")
    names = _param_names(pool2)
    assert info.parameter_names == names and info.lambdas.shape == (2, len(names))
    assert (info.lambdas.std(dim=1) > 0).all()  # tensors got different coefficients
    taus = pool2.task_vectors()
    for i, n in enumerate(names):
        expected = pool2.pretrained[n] + info.lambdas[0, i] * taus["t0"][n] + info.lambdas[1, i] * taus["t1"][n]
        assert torch.allclose(state[n], expected, atol=1e-6), n
    for k in set(pool2.pretrained) - set(names):  # buffers are not merged
        assert torch.equal(state[k], pool2.pretrained[k])


def _ties_selected(taus: dict, names: list[str], fraction: float = 0.2) -> dict:
    """Independent AdaMerging++ vectors: global top-k per task, elected sign, agreeing entries.

    As AdaMerging's ``topk_values_mask`` (SPEC 4b): entries >= the (d - int(k d))-th smallest magnitude,
    i.e. the int(k d) + 1 largest."""
    out = {}
    trimmed = {}
    for t, tau in taus.items():
        flat = torch.cat([tau[n].reshape(-1) for n in names])
        k = int(fraction * flat.numel()) + 1
        thr = flat.abs().topk(k).values[-1]
        trimmed[t] = {n: tau[n] * (tau[n].abs() >= thr) for n in names}
    for t in taus:
        out[t] = {}
        for n in names:
            sign = torch.sign(sum(trimmed[s][n] for s in taus))
            out[t][n] = trimmed[t][n] * (torch.sign(trimmed[t][n]) == sign)
    return out


def test_adamerging_plus_plus_merges_only_trimmed_sign_agreeing_entries(pool2, data2):
    state, info = adamerging.merge_task_wise(pool2, data2, steps=2, batch_size=8, lr=1e-2, plus_plus=True,
                                             device="cpu")
    names = _param_names(pool2)
    sel = _ties_selected(pool2.task_vectors(), names)
    changed = total = 0
    for n in names:
        expected = pool2.pretrained[n] + info.lambdas[0] * sel["t0"][n] + info.lambdas[1] * sel["t1"][n]
        assert torch.allclose(state[n], expected, atol=1e-6), n
        changed += int((state[n] != pool2.pretrained[n]).sum())
        total += state[n].numel()
    # at most 20% of the entries per task can move; plain AdaMerging moves almost all of them
    assert 0 < changed <= 2 * 0.2 * total + 2
    plain = adamerging.merge(pool2, data2, granularity="task", steps=1, batch_size=8, device="cpu")
    assert sum(int((plain[n] != pool2.pretrained[n]).sum()) for n in names) > 0.9 * total


def test_adamerging_refuses_bad_input(pool2, data2):
    with pytest.raises(ValueError, match="granularity"):
        adamerging.merge(pool2, data2, granularity="block", steps=1)
    with pytest.raises(ValueError, match=r"no unlabelled images for tasks \['t1'\]"):
        adamerging.merge_task_wise(pool2, {"t0": data2["t0"]}, steps=1)
    with pytest.raises(ValueError, match="batch_size"):
        adamerging.merge_layer_wise(pool2, data2, steps=1, batch_size=0)


def test_each_step_draws_a_fresh_seeded_batch_that_covers_the_whole_test_set():
    # AdaMerging's code reshuffles the whole test set at every step (get_dataloader_shuffle): the batches
    # of successive steps differ, and over enough steps every image is used
    n, b = 40, 8
    draws = [adamerging.step_indices(n, b, 0, "t0", s) for s in range(60)]
    assert all(len(set(d.tolist())) == b and d.min() >= 0 and d.max() < n for d in draws)
    assert all(not np.array_equal(a, c) for a, c in zip(draws, draws[1:]))
    assert set(np.concatenate(draws).tolist()) == set(range(n))
    assert np.array_equal(adamerging.step_indices(n, b, 0, "t0", 7), draws[7])  # seeded: reproducible
    assert not np.array_equal(adamerging.step_indices(n, b, 1, "t0", 7), draws[7])  # the config seed matters
    assert not np.array_equal(adamerging.step_indices(n, b, 0, "t1", 7), draws[7])  # tasks draw independently
    assert np.array_equal(adamerging.step_indices(5, b, 0, "t0", 3), np.arange(5))  # a small set: all of it


class Recording(torch.utils.data.Dataset):
    """A task's test set that logs which images are read, and when (into a log shared with the forwards)."""

    def __init__(self, task, x, log):
        self.task, self.x, self.log = task, x, log

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.log.append((self.task, int(i)))
        return self.x[i], 0


def test_adamerging_streams_each_steps_batch_from_the_dataset(pool2, monkeypatch):
    g = torch.Generator().manual_seed(4)
    x = {t: torch.randn(40, 3, 32, 32, generator=g) for t in ("t0", "t1")}
    log = []
    forward = torch.func.functional_call

    def logged_forward(*args, **kwargs):
        log.append("forward")
        return forward(*args, **kwargs)

    monkeypatch.setattr(torch.func, "functional_call", logged_forward)
    steps, b = 5, 4
    data = {t: Recording(t, x[t], log) for t in x}
    _, info = adamerging.merge_task_wise(pool2, data, steps=steps, batch_size=b, lr=1e-2, seed=3, device="cpu")
    # only the drawn images are read (never the whole set), each step's just before that step's forward
    expected = []
    for s in range(steps):
        for t in ("t0", "t1"):
            expected += [(t, int(i)) for i in adamerging.step_indices(40, b, 3, t, s)] + ["forward"]
    assert log == expected
    assert sum(entry != "forward" for entry in log) == steps * b * 2 < 2 * 40
    # the same batches as from tensors, so the result does not depend on how the images are held
    _, from_tensors = adamerging.merge_task_wise(pool2, x, steps=steps, batch_size=b, lr=1e-2, seed=3, device="cpu")
    assert info.losses == pytest.approx(from_tensors.losses, rel=1e-6)
    assert torch.allclose(info.lambdas, from_tensors.lambdas)


# ---------------------------------------------------------------- OPCM


def test_projection_removes_diagonal_and_dominant_block_only():
    merged = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64))
    task = torch.ones(4, 4, dtype=torch.float64)
    # shares 0.4, 0.7, 0.9, 1.0: alpha = 0.8 -> block of the 2 leading directions; alpha = 0.5 -> 1
    assert opcm.split_rank(torch.tensor([4.0, 3.0, 2.0, 1.0]), 0.8) == 2
    expected = torch.ones(4, 4, dtype=torch.float64) - torch.eye(4, dtype=torch.float64)
    expected[0, 1] = expected[1, 0] = 0.0
    assert torch.allclose(opcm.project_task_vector(merged, task, 0.8), expected, atol=1e-12)
    assert torch.allclose(opcm.project_task_vector(merged, task, 0.5), 1 - torch.eye(4, dtype=torch.float64),
                          atol=1e-12)
    # a rectangular merged matrix: columns outside its row space are kept as they are
    wide = torch.cat([merged, torch.zeros(4, 2, dtype=torch.float64)], dim=1)
    got = opcm.project_task_vector(wide, torch.ones(4, 6, dtype=torch.float64), 0.5)
    assert torch.allclose(got[:, :4], 1 - torch.eye(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(got[:, 4:], torch.ones(4, 2, dtype=torch.float64), atol=1e-12)


def _synthetic(theta0, tau):
    return {k: theta0[k] + tau[k] if k in tau else theta0[k].clone() for k in theta0}


def test_opcm_single_expert_is_the_expert_and_orthogonal_second_is_kept():
    d = torch.float64
    theta0 = {"w": torch.randn(4, 4, dtype=d), "b": torch.randn(4, dtype=d), "n": torch.tensor(7)}
    tau1 = {"w": torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=d)), "b": torch.tensor([1.0, 0, 0, 0], dtype=d)}
    ortho = {"w": torch.zeros(4, 4, dtype=d), "b": torch.tensor([0, 2.0, 0, 0], dtype=d)}
    ortho["w"][2, 3] = 5.0  # off the diagonal and outside the dominant block
    e1, e2 = _synthetic(theta0, tau1), _synthetic(theta0, ortho)
    blocks = {"w": 1}
    _assert_state_equal(opcm.merge_sequence(theta0, [e1], blocks, alpha=0.5), e1, atol=1e-12)
    got = opcm.merge_sequence(theta0, [e1, e2], blocks, alpha=0.5)
    # S = tau1 + tau2 unchanged; rescaled to the mean task-vector norm (sqrt 31 + sqrt 29) / 2
    scale = (math.sqrt(31) + math.sqrt(29)) / 2 / math.sqrt(60)
    expected = {"w": theta0["w"] + scale * (tau1["w"] + ortho["w"]), "b": theta0["b"] + scale * (tau1["b"] + ortho["b"]),
                "n": theta0["n"]}
    _assert_state_equal(got, expected, atol=1e-12)
    # a second expert along the first one's directions loses exactly those components
    ones = {"w": torch.ones(4, 4, dtype=d), "b": torch.zeros(4, dtype=d)}
    got = opcm.merge_sequence(theta0, [e1, _synthetic(theta0, ones)], blocks, alpha=0.5)
    s_w = tau1["w"] + 1 - torch.eye(4, dtype=d)
    s_norm = math.sqrt(float((s_w**2).sum()) + 1.0)
    scale = (math.sqrt(31) + 4.0) / 2 / s_norm
    assert torch.allclose(got["w"], theta0["w"] + scale * s_w, atol=1e-12)


def test_opcm_on_a_pool():
    pool = _pool(3)
    blocks = opcm.matrix_blocks(pool.encoder())
    assert blocks == {f"attnpool.{p}.weight": 1 for p in ("k_proj", "q_proj", "v_proj", "c_proj")}
    mha = torch.nn.Sequential(torch.nn.MultiheadAttention(8, 2))
    assert opcm.matrix_blocks(mha) == {"0.in_proj_weight": 3, "0.out_proj.weight": 1}
    merged = opcm.merge(pool, alpha=0.5, device="cpu")
    assert {k: v.shape for k, v in merged.items()} == {k: v.shape for k, v in pool.pretrained.items()}
    taus = pool.task_vectors()
    norm = lambda tau: math.sqrt(sum(float((v.double() ** 2).sum()) for v in tau.values()))  # noqa: E731
    merged_tau = {k: merged[k] - pool.pretrained[k] for k in taus["t0"]}
    assert norm(merged_tau) == pytest.approx(np.mean([norm(t) for t in taus.values()]), rel=1e-4)
    single = ModelPool(pool.architecture, pool.pretrained, {"t1": pool.experts["t1"]}, pool.heads)
    _assert_state_equal(opcm.merge(single, device="cpu"), pool.experts["t1"], atol=1e-6)
    order = pool.tasks
    random.Random(1).shuffle(order)
    assert order != pool.tasks
    reordered = opcm.merge_sequence(pool.pretrained, [pool.experts[t] for t in order], blocks)
    _assert_state_equal(opcm.merge(pool, shuffle_seed=1, device="cpu"), reordered, atol=1e-6)
    assert not torch.allclose(reordered["attnpool.c_proj.weight"], merged["attnpool.c_proj.weight"], atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        opcm.merge(pool, alpha=1.0)


# ---------------------------------------------------------------- multi-task DaWin


@pytest.fixture(scope="module")
def pool3():
    return _pool(3, n_classes=4, seed=1)


def test_uniform_coefficients_are_task_arithmetic(pool3):
    direct = {k: v.clone() for k, v in pool3.pretrained.items()}
    for sd in pool3.experts.values():
        for k, _ in pool3.encoder().named_parameters():
            direct[k] = direct[k] + 0.3 * (sd[k] - pool3.pretrained[k])
    _assert_state_equal(dawin_multitask.merged_encoder_state(pool3, [1 / 3] * 3), direct, atol=1e-6)
    paper = dawin_multitask.merged_encoder_state(pool3, [1 / 3] * 3, authors_scaling=False)
    k = "attnpool.c_proj.weight"
    assert torch.allclose(paper[k] - pool3.pretrained[k], (direct[k] - pool3.pretrained[k]) / 3, atol=1e-6)
    with pytest.raises(ValueError, match="one column per expert"):
        dawin_multitask.merged_encoder_state(pool3, [0.5, 0.5])
    with pytest.raises(ValueError, match="not on the simplex"):
        dawin_multitask.merged_encoder_state(pool3, [0.5, 0.5, 0.5])


def test_expert_coefficients_follow_entropies(pool3):
    x = torch.randn(6, 3, 32, 32)
    logits = dawin_multitask.expert_logits(pool3, "t1", TensorSet(x), batch_size=4, device=torch.device("cpu"))
    assert len(logits) == 3 and all(z.shape == (6, 4) for z in logits)
    h = dawin_multitask.expert_entropies(logits)
    assert h.shape == (6, 3) and torch.allclose(h[:, 2], entropy(logits[2]))
    coef = dawin_multitask.expert_coefficients(logits)
    assert torch.allclose(coef.sum(dim=1), torch.ones(6, dtype=coef.dtype))
    assert torch.equal(coef.argmax(dim=1), h.argmin(dim=1))
    assert torch.allclose(coef, torch.softmax(-h, dim=1))


def test_grouped_evaluator_equals_each_sample_under_its_own_merged_model(pool3):
    x = torch.randn(7, 3, 32, 32)
    rows = np.array([[0.2, 0.5, 0.3], [1 / 3, 1 / 3, 1 / 3], [0.7, 0.1, 0.2]])
    membership = np.array([2, 0, 1, 2, 0, 0, 1])
    coef = rows[membership]
    got = dawin_multitask.MultiTaskGroupedEvaluator(batch_size=3, device=torch.device("cpu")).evaluate(
        pool3, "t2", TensorSet(x), coef)
    direct = []
    with torch.no_grad():
        for xi, c in zip(x, coef):
            model = pool3.classifier("t2", dawin_multitask.merged_encoder_state(pool3, c))
            direct.append(model(xi[None]))
    direct = torch.cat(direct)
    assert got.shape == (7, 4)
    assert torch.allclose(got, direct, atol=1e-5)
    assert not torch.allclose(got[0], got[1], atol=1e-3)  # different merged models really differ
    with pytest.raises(ValueError, match="6 coefficient rows for 7 samples"):
        dawin_multitask.MultiTaskGroupedEvaluator(device=torch.device("cpu")).evaluate(pool3, "t2", TensorSet(x), coef[:6])


def test_cluster_coefficients_with_one_component_is_the_dirichlet_mean():
    coef = torch.softmax(torch.randn(20, 3, generator=torch.Generator().manual_seed(5)), dim=1).double().numpy()
    assigned, info = dawin_multitask.cluster_coefficients(coef, n_components=1, seed=0)
    assert assigned.shape == (20, 3) and info["n_components"] == 1 and (info["labels"] == 0).all()
    assert np.allclose(assigned, coef.mean(axis=0)[None], atol=1e-12)
    assigned2, info2 = dawin_multitask.cluster_coefficients(coef, n_components=2, seed=0)
    assert len(np.unique(assigned2, axis=0)) == info2["n_components"] == 2
