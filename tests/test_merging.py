import inspect
import warnings

import pytest
import torch
from torch import nn

from dawin.method import weights
from dawin.merging import METHODS, ModelPool, fisher, get_method, regmean, ties
from dawin.merging.fisher import diagonal_fisher
from dawin.merging.pool import example_indices
from dawin.merging.regmean import regmean_merge
from dawin.inputs.models import create_clip

TASKS = ("cars", "dtd", "svhn")


@pytest.fixture(scope="module")
def pool():
    """Three dawin-tiny-rn experts perturbed from one seeded encoder, with random heads."""
    torch.manual_seed(0)
    base = {k: v.clone() for k, v in create_clip("dawin-tiny-rn").visual.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    experts = {
        t: {k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone() for k, v in base.items()}
        for t in TASKS
    }
    heads = {t: torch.randn(3 + i, 64, generator=g) for i, t in enumerate(TASKS)}
    return ModelPool("dawin-tiny-rn", base, experts, heads)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(2)
    return {t: torch.randn(3, 3, 32, 32, generator=g) for t in TASKS}


def _floats(sd):
    return [k for k, v in sd.items() if v.is_floating_point()]


def test_get_method():
    assert get_method("ties") is METHODS["ties"] is ties.merge
    with pytest.raises(ValueError, match="unknown merging method 'soup'"):
        get_method("soup")


def test_weight_average_is_the_mean(pool):
    out = get_method("weight_average")(pool)
    for k in _floats(pool.pretrained):
        assert torch.allclose(out[k], sum(pool.experts[t][k] for t in TASKS) / 3, atol=1e-6)


def test_task_arithmetic_adds_scaled_task_vectors(pool):
    out = get_method("task_arithmetic")(pool)
    half = get_method("task_arithmetic")(pool, lam=0.5)
    params = pool.parameter_names()
    for k in _floats(pool.pretrained):
        if k not in params:  # BatchNorm statistics are no task-vector entries: they stay theta0's
            assert torch.equal(out[k], pool.pretrained[k])
            continue
        tau_sum = sum(pool.experts[t][k] - pool.pretrained[k] for t in TASKS)
        assert torch.allclose(out[k], pool.pretrained[k] + 0.3 * tau_sum, atol=1e-6)
        assert torch.allclose(half[k], pool.pretrained[k] + 0.5 * tau_sum, atol=1e-6)
    assert any(k not in params for k in _floats(pool.pretrained))  # the tiny ResNet tower has such buffers


def test_ties_uses_the_shared_arithmetic(pool):
    out = get_method("ties")(pool)
    params = pool.parameter_names()
    taus = [{k: v for k, v in weights.task_vector(pool.experts[t], pool.pretrained).items() if k in params} for t in TASKS]
    expected = ties.ties_merge(pool.pretrained, taus, fraction=0.2, lam=0.3, reduce="sum")
    assert set(out) == set(expected)
    for k in expected:
        assert torch.equal(out[k], expected[k])


def test_fisher_of_identical_experts_is_that_expert(pool, images):
    expert = pool.experts["cars"]
    same = ModelPool(pool.architecture, pool.pretrained, {t: expert for t in TASKS}, pool.heads)
    out = get_method("fisher")(same, images, n_examples=2)
    for k in _floats(expert):
        assert torch.allclose(out[k], expert[k], atol=1e-6), k


def test_fisher_merge_is_a_per_entry_convex_combination(pool, images):
    out = get_method("fisher")(pool, images, n_examples=2)
    stacked = {k: torch.stack([pool.experts[t][k] for t in TASKS]) for k in _floats(pool.pretrained)}
    for k, s in stacked.items():
        assert (out[k] >= s.min(0).values - 1e-6).all() and (out[k] <= s.max(0).values + 1e-6).all(), k
    # with different experts the Fisher weights are not uniform: some entry differs from the mean
    mean = get_method("weight_average")(pool)
    assert any(not torch.allclose(out[k], mean[k], atol=1e-7) for k in stacked)


class Logged(torch.utils.data.Dataset):
    """A task's train split that records which images are read."""

    def __init__(self, x):
        self.x, self.read = x, []

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.read.append(int(i))
        return self.x[i], 0


def test_fusionbench_fisher_reads_the_first_whole_batches_of_each_tasks_split(pool):
    """Issue 24 item 13: FusionBench's clip_fisher_merging.py iterates an unshuffled DataLoader of batch_size 32
    (config/method/fisher_merging/clip_fisher_merging.yaml) until num_fisher_examples are seen: the first whole
    batches. With n_examples 5: one batch, the first 32 of 40 images."""
    assert inspect.signature(fisher.merge).parameters["variant"].default == "fusionbench"
    assert fisher.VARIANTS["fusionbench"]["batch_size"] == 32
    two = ModelPool(pool.architecture, pool.pretrained, {t: pool.experts[t] for t in TASKS[:2]}, pool.heads)
    g = torch.Generator().manual_seed(5)
    x = {t: torch.randn(40, 3, 32, 32, generator=g) for t in TASKS[:2]}
    data = {t: Logged(x[t]) for t in TASKS[:2]}
    out = get_method("fisher")(two, data, n_examples=5, seed=7)
    for t in TASKS[:2]:
        assert data[t].read == list(range(32)), t
    ref = get_method("fisher")(two, {t: x[t][:32] for t in TASKS[:2]}, n_examples=32, seed=0)
    for k in _floats(pool.pretrained):
        assert torch.equal(out[k], ref[k]), k
    with pytest.raises(ValueError, match=r"unknown Fisher variant 'batch'.*\['fusionbench', 'per_example'\]"):
        get_method("fisher")(two, data, variant="batch")


def test_fisher_and_regmean_read_a_seeded_draw_of_n_examples_of_each_tasks_split(pool):
    # FusionBench: num_fisher_examples / num_regmean_examples 256, from each task's train split
    for module in (fisher, regmean):
        assert inspect.signature(module.merge).parameters["n_examples"].default == 256
    g = torch.Generator().manual_seed(5)
    x = {t: torch.randn(10, 3, 32, 32, generator=g) for t in TASKS}
    y = {t: torch.randint(0, 3, (10,), generator=g) for t in TASKS}
    drawn = {t: example_indices(10, 4, 7, t) for t in TASKS}
    assert len({tuple(d.tolist()) for d in drawn.values()}) > 1  # tasks draw independently
    assert not all(torch.equal(torch.as_tensor(drawn[t]), torch.as_tensor(example_indices(10, 4, 8, t)))
                   for t in TASKS)  # the seed matters
    for name in ("fisher", "regmean"):
        data = {t: Logged(x[t]) for t in TASKS}
        labels = {"labels": y, "variant": "per_example"} if name == "fisher" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # RegMean on the ResNet tower: "simple average"
            out = get_method(name)(pool, data, n_examples=4, seed=7, **labels)
            # exactly the drawn images (and their labels) are used: the same as passing just those
            ref = get_method(name)(pool, {t: x[t][drawn[t]] for t in TASKS}, n_examples=4, seed=0,
                                   **({"labels": {t: y[t][drawn[t]] for t in TASKS}, "variant": "per_example"}
                                      if labels else {}))
        for t in TASKS:
            assert data[t].read == drawn[t].tolist(), (name, t)  # read once, only those
        for k in _floats(pool.pretrained):
            assert torch.allclose(out[k], ref[k], atol=1e-6), (name, k)


def test_diagonal_fisher_of_a_linear_classifier_in_closed_form():
    torch.manual_seed(3)
    model = nn.Linear(4, 3, bias=False)
    x = torch.randn(5, 4)
    p = torch.softmax(x @ model.weight.detach().T, dim=-1)
    # d log p_c / dW = (e_c - p) x^T, so the model-distribution objective sum_c sqrt(p_c) log p_c
    # has gradient (sqrt(p) - p * sum_c sqrt(p_c)) x^T per example
    coef = p.sqrt() - p * p.sqrt().sum(-1, keepdim=True)
    expected = torch.stack([torch.outer(coef[n], x[n]) ** 2 for n in range(5)]).mean(0)
    assert torch.allclose(diagonal_fisher(model, x)["weight"], expected, atol=1e-6)
    y = torch.tensor([0, 2, 1, 1, 0])
    coef = torch.nn.functional.one_hot(y, 3).float() - p  # empirical Fisher with the given labels
    expected = torch.stack([torch.outer(coef[n], x[n]) ** 2 for n in range(5)]).mean(0)
    assert torch.allclose(diagonal_fisher(model, x, y)["weight"], expected, atol=1e-6)


def test_fisher_of_a_summed_batch_objective_in_closed_form():
    """Issue 24 item 13: FusionBench (clip_fisher_merging.py, get_fisher_weights) squares the gradient of each
    batch's summed objective sum_n sum_c sqrt(p_nc) log p_nc, sums over batches, divides by the images seen."""
    torch.manual_seed(3)
    model = nn.Linear(4, 3, bias=False)
    x = torch.randn(5, 4)
    p = torch.softmax(x @ model.weight.detach().T, dim=-1)
    coef = p.sqrt() - p * p.sqrt().sum(-1, keepdim=True)  # d s(x_n) / dW = coef_n x_n^T
    grads = [sum(torch.outer(coef[n], x[n]) for n in batch) for batch in ([0, 1], [2, 3], [4])]
    expected = sum(g ** 2 for g in grads) / 5
    assert torch.allclose(diagonal_fisher(model, x, batch_size=2)["weight"], expected, atol=1e-6)
    # cross terms: not the per-example Fisher
    assert not torch.allclose(diagonal_fisher(model, x, batch_size=2)["weight"], diagonal_fisher(model, x)["weight"],
                              atol=1e-4)


def test_fusionbench_fisher_weights_models_by_their_inverse_norms():
    """merging_with_fisher_weights (fusion_bench/method/fisher_merging/fisher_merging.py): weights
    c_j (F_j + eps), c_j = (1 / (||F_j|| + eps)) / sum_k (1 / (||F_k|| + eps)), eps added to the raw Fisher."""
    states = [{"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, -1.0])}]
    fishers = [{"w": torch.tensor([3.0, 4.0])}, {"w": torch.tensor([0.0, 1.0])}]  # norms 5 and 1
    eps = 0.5
    c = [1 / 5.5, 1 / 1.5]
    out = fisher.fisher_weighted_average(states, fishers, eps=eps, scales=c)["w"]
    w0, w1 = c[0] * torch.tensor([3.5, 4.5]), c[1] * torch.tensor([0.5, 1.5])
    assert torch.allclose(out, (w0 * states[0]["w"] + w1 * states[1]["w"]) / (w0 + w1))


def _linear_states(n, d_in=5, d_out=3, seed=4):
    g = torch.Generator().manual_seed(seed)
    return [{"weight": torch.randn(d_out, d_in, generator=g), "bias": torch.randn(d_out, generator=g)} for _ in range(n)]


def test_regmean_on_one_linear_layer_is_least_squares():
    states = _linear_states(3)
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn(20, 5, generator=g) for _ in states]
    out = regmean_merge(nn.Linear(5, 3), states, xs, alpha=1.0)
    # min_W sum_j ||X_j W^T - X_j W_j^T||^2, solved directly
    a = torch.cat(xs).double()
    b = torch.cat([x @ s["weight"].T for x, s in zip(xs, states)]).double()
    w_t = torch.linalg.lstsq(a, b).solution
    assert torch.allclose(out["weight"], w_t.T.float(), atol=1e-5)
    assert torch.allclose(out["bias"], sum(s["bias"] for s in states) / 3, atol=1e-6)  # biases averaged


def test_regmean_weighs_tasks_by_row_averaged_grams():
    states = _linear_states(2)
    g = torch.Generator().manual_seed(6)
    xs = [torch.randn(10, 5, generator=g), torch.randn(40, 5, generator=g)]
    out = regmean_merge(nn.Linear(5, 3), states, xs, alpha=1.0)
    # G_j = X_j^T X_j / n_j: rows of task j scaled by 1 / sqrt(n_j) in the least-squares problem
    a = torch.cat([x / len(x) ** 0.5 for x in xs]).double()
    b = torch.cat([x @ s["weight"].T / len(x) ** 0.5 for x, s in zip(xs, states)]).double()
    assert torch.allclose(out["weight"], torch.linalg.lstsq(a, b).solution.T.float(), atol=1e-5)


def test_regmean_full_shrinkage_is_a_per_input_weighted_average():
    states = _linear_states(2)
    g = torch.Generator().manual_seed(7)
    xs = [torch.randn(30, 5, generator=g) * torch.arange(1.0, 6.0), torch.randn(30, 5, generator=g)]
    out = regmean_merge(nn.Linear(5, 3), states, xs, alpha=0.0)
    # alpha = 0 keeps only diag(G_j) = mean squared input i: column i of W is a weighted average
    d = [(x ** 2).mean(0) for x in xs]
    expected = (d[0] * states[0]["weight"] + d[1] * states[1]["weight"]) / (d[0] + d[1])
    assert torch.allclose(out["weight"], expected, atol=1e-5)


class _SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


def _heads_concatenated(attention: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """out_proj's input by hand: per head softmax(Q K^T / sqrt(d)) V, heads side by side (x: batch, tokens, dim)."""
    w, b = attention.in_proj_weight.detach(), attention.in_proj_bias.detach()
    q, k, v = (x @ w[i * 8:(i + 1) * 8].T + b[i * 8:(i + 1) * 8] for i in range(3))
    heads = []
    for h in range(2):
        cols = slice(4 * h, 4 * (h + 1))
        scores = q[..., cols] @ k[..., cols].transpose(-1, -2) / 4 ** 0.5
        heads.append(torch.softmax(scores, dim=-1) @ v[..., cols])
    return torch.cat(heads, dim=-1)


def test_regmean_covers_self_attention_in_proj_and_out_proj():
    """Issue 24 item 13: FusionBench's regmean.py merges every nn.Linear, the attention's out_proj included
    (tanganke/fusion_bench@54c9e8c9 fusion_bench/method/regmean/regmean.py); PyTorch applies out_proj inside
    F.multi_head_attention_forward, so its input is computed, not hooked. Grams and merge by direct arithmetic."""
    torch.manual_seed(8)
    states = [{k: v.clone() for k, v in _SelfAttention().state_dict().items()} for _ in range(2)]
    g = torch.Generator().manual_seed(9)
    xs = [torch.randn(4, 6, 8, generator=g) for _ in states]
    out = regmean_merge(_SelfAttention(), states, xs, alpha=1.0)
    a = torch.cat([x.reshape(-1, 8) for x in xs]).double()
    b = torch.cat([x.reshape(-1, 8) @ s["attn.in_proj_weight"].T for x, s in zip(xs, states)]).double()
    assert torch.allclose(out["attn.in_proj_weight"], torch.linalg.lstsq(a, b).solution.T.float(), atol=1e-5)
    # out_proj: its inputs are each expert's concatenated heads; the Gram is their row average
    module, values = _SelfAttention(), []
    for state, x in zip(states, xs):
        module.load_state_dict(state)
        with torch.no_grad():
            values.append(_heads_concatenated(module.attn, x).reshape(-1, 8))
        grams = regmean.input_grams(module, x)
        assert torch.allclose(grams["attn.out_proj.weight"], values[-1].T @ values[-1] / 24, atol=1e-5)
        assert set(grams) == {"attn.in_proj_weight", "attn.out_proj.weight"}
    a = torch.cat(values).double()
    b = torch.cat([v @ s["attn.out_proj.weight"].T for v, s in zip(values, states)]).double()
    assert torch.allclose(out["attn.out_proj.weight"], torch.linalg.lstsq(a, b).solution.T.float(), atol=1e-4)
    mean = (states[0]["attn.out_proj.weight"] + states[1]["attn.out_proj.weight"]) / 2
    assert not torch.allclose(out["attn.out_proj.weight"], mean, atol=1e-3)  # no longer the plain average
    # the module's own output is unchanged by the hooks
    module.load_state_dict(states[0])
    with torch.no_grad():
        plain = module(xs[0])
        regmean.input_grams(module, xs[0])
        assert torch.equal(module(xs[0]), plain)


def test_regmean_covers_every_linear_map_of_an_open_clip_vit():
    """Every nn.Linear of the tower (out_proj included) and in_proj, as FusionBench's HF CLIP q/k/v/out/fc1/fc2."""
    visual = create_clip("dawin-mini-vit-quickgelu").visual.eval()
    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    grams = regmean.input_grams(visual, torch.randn(2, 3, size, size))
    linear = {f"{n}.weight" for n, m in visual.named_modules() if isinstance(m, nn.Linear)}
    attention = {f"{n}.in_proj_weight" for n, m in visual.named_modules() if isinstance(m, nn.MultiheadAttention)}
    assert any(k.endswith("attn.out_proj.weight") for k in linear) and attention
    assert set(grams) == linear | attention


def test_regmean_on_a_resnet_pool_warns_and_averages(pool, images):
    with pytest.warns(UserWarning, match="simple average"):
        out = get_method("regmean")(pool, images, n_examples=2)
    mean = get_method("weight_average")(pool)
    for k in _floats(pool.pretrained):
        assert torch.allclose(out[k], mean[k], atol=1e-6)


def test_data_methods_refuse_missing_data(pool, images):
    for name in ("fisher", "regmean"):
        with pytest.raises(ValueError, match="needs data="):
            get_method(name)(pool)
        with pytest.raises(ValueError, match=r"no images for tasks \['svhn'\]"):
            get_method(name)(pool, {t: images[t] for t in TASKS[:2]})
