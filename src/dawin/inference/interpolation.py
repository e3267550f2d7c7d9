"""Exact per-sample weight interpolation for a whole batch in one forward pass.

theta(l) = theta0 + l * delta (delta = theta1 - theta0) is linear in every parameter, so each parameterised op
of the merged model, applied to sample i, equals the theta0 op plus l_i times the delta op on the same input:
a linear or convolution layer is ``x W0^T + b0 + l_i (x dW^T + db)``; LayerNorm and BatchNorm (eval mode: its
running statistics are float buffers and interpolate too) take per-sample affine parameters and statistics;
additive parameters (class and positional embeddings) and ``proj`` are combined per sample. The network stays
nonlinear; only the parameterised ops split in two, at about twice the matrix FLOPs of one forward pass. This
is what :class:`dawin.inference.evaluation.LoopPerSampleEvaluator` computes one image and one merge at a time.

:func:`split_classifier` rebuilds a classifier from these split ops. It covers open_clip 3.3's
``VisionTransformer`` (``transformer.py``: conv1, class and positional embeddings, ln_pre / ln_post, the
``nn.MultiheadAttention(batch_first=True)`` and MLP of each ``ResidualAttentionBlock``, ``proj``) and
``ModifiedResNet`` (``modified_resnet.py``: convolutions, BatchNorm in eval mode, ``AttentionPool2d``, which
calls ``F.multi_head_attention_forward`` with separate q/k/v projections, ``c_proj`` and its positional
embedding), and the classification head. Every module of the model must be of a type listed in
:data:`COVERED` or :data:`PASSIVE`; any other (open_clip's ``CustomResidualAttentionBlock``, ``LayerScale``,
``AttentionalPooler``, a timm tower, ...) is refused by name, never approximated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from dawin.inputs.openclip import open_clip  # noqa: F401, I001 - first: open_clip without timm and transformers (see there)
from open_clip import modified_resnet as oc_resnet
from open_clip import transformer as oc_transformer
from torch import nn

from ..inputs.models import ImageClassifier
from ..method.weights import same_keys


class UncoveredOpError(TypeError):
    """The model holds a module the batched per-sample evaluator does not cover."""


class _Coefficients:
    """The current batch's coefficients (B,), shared by every split op of one model."""

    value: torch.Tensor | None = None


class _Split(nn.Module):
    """An op whose parameters P are held as P0 (buffer ``name``) and dP (buffer ``name_delta``)."""

    def __init__(self, coef: _Coefficients, module: nn.Module, delta: dict[str, torch.Tensor], names: list[str]):
        super().__init__()
        self._coef = coef
        for name in names:
            value = getattr(module, name)
            self.register_buffer(name, None if value is None else value.detach().clone())
            self.register_buffer(name + "_delta", None if value is None else delta[name].to(value.dtype).clone())

    def lam(self, ndim: int, dtype: torch.dtype) -> torch.Tensor:
        """The batch's coefficients shaped (B, 1, ..., 1) to broadcast over a tensor of ``ndim`` dims."""
        value = self._coef.value
        if value is None:
            raise RuntimeError("split op called outside SplitClassifier.forward (no coefficients set)")
        return value.to(dtype).view(-1, *([1] * (ndim - 1)))

    def per_sample(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Parameter ``name`` of each sample's merged model: P0 + l_i dP, shape (B, *P.shape)."""
        p0, dp = getattr(self, name), getattr(self, name + "_delta")
        dtype = dtype or p0.dtype
        return p0.to(dtype)[None] + self.lam(p0.ndim + 1, dtype) * dp.to(dtype)[None]


class SplitLinear(_Split):
    def __init__(self, coef, module: nn.Linear, delta):
        super().__init__(coef, module, delta, ["weight", "bias"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base, tangent = F.linear(x, self.weight, self.bias), F.linear(x, self.weight_delta, self.bias_delta)
        return base + self.lam(tangent.ndim, tangent.dtype) * tangent


class SplitConv2d(_Split):
    def __init__(self, coef, module: nn.Conv2d, delta):
        if module.padding_mode != "zeros":
            raise UncoveredOpError(f"Conv2d with padding_mode={module.padding_mode!r} is not covered")
        super().__init__(coef, module, delta, ["weight", "bias"])
        self.conv = dict(stride=module.stride, padding=module.padding, dilation=module.dilation, groups=module.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.conv2d(x, self.weight, self.bias, **self.conv)
        tangent = F.conv2d(x, self.weight_delta, self.bias_delta, **self.conv)
        return base + self.lam(tangent.ndim, tangent.dtype) * tangent


class SplitLayerNorm(_Split):
    """nn.LayerNorm and open_clip's LayerNorm (cast back to the input dtype) and LayerNormFp32 (computed in fp32)."""

    def __init__(self, coef, module: nn.LayerNorm, delta):
        super().__init__(coef, module, delta, ["weight", "bias"])
        self.shape, self.eps = module.normalized_shape, module.eps
        self.fp32 = isinstance(module, oc_transformer.LayerNormFp32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        y = F.layer_norm(x.float() if self.fp32 else x, self.shape, None, None, self.eps)
        extra = [1] * (x.ndim - 1 - len(self.shape))  # between the batch dim and the normalised dims
        if self.weight is not None:
            w = self.per_sample("weight", y.dtype)
            y = y * w.view(w.shape[0], *extra, *self.shape)
        if self.bias is not None:
            b = self.per_sample("bias", y.dtype)
            y = y + b.view(b.shape[0], *extra, *self.shape)
        return y.to(dtype)


class SplitBatchNorm2d(_Split):
    """BatchNorm in eval mode with per-sample running statistics and affine parameters."""

    def __init__(self, coef, module: nn.BatchNorm2d, delta):
        if not module.track_running_stats or module.running_mean is None:
            raise UncoveredOpError("BatchNorm2d without running statistics is not covered")
        super().__init__(coef, module, delta, ["weight", "bias", "running_mean", "running_var"])
        self.eps = module.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise UncoveredOpError("SplitBatchNorm2d runs in eval mode only (running statistics)")
        view = (x.shape[0], -1, 1, 1)
        mean, var = self.per_sample("running_mean", x.dtype), self.per_sample("running_var", x.dtype)
        y = (x - mean.view(view)) * torch.rsqrt(var.view(view) + self.eps)
        if self.weight is not None:
            y = y * self.per_sample("weight", x.dtype).view(view) + self.per_sample("bias", x.dtype).view(view)
        return y


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Scaled dot-product attention of (B, Lq, D) queries over (B, L, D) keys and values, ``heads`` heads."""
    b, lq, d = q.shape
    split = lambda t: t.reshape(b, t.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(b, lq, d)


class SplitMultiheadAttention(_Split):
    """nn.MultiheadAttention(batch_first=True) used as self-attention without masks (vision towers)."""

    def __init__(self, coef, module: nn.MultiheadAttention, delta):
        if not (module.batch_first and module._qkv_same_embed_dim and module.bias_k is None
                and not module.add_zero_attn and module.in_proj_bias is not None):
            raise UncoveredOpError("nn.MultiheadAttention is covered with batch_first=True, one in-projection with "
                                   "bias, no bias_k/bias_v and add_zero_attn=False only")
        super().__init__(coef, module, delta, ["in_proj_weight", "in_proj_bias"])
        self.out_proj, self.num_heads = module.out_proj, module.num_heads

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, **_):
        if not (query is key is value) or key_padding_mask is not None or attn_mask is not None:
            raise UncoveredOpError("split attention covers unmasked self-attention only")
        base = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        tangent = F.linear(query, self.in_proj_weight_delta, self.in_proj_bias_delta)
        q, k, v = (base + self.lam(3, tangent.dtype) * tangent).chunk(3, dim=-1)
        return self.out_proj(_attention(q, k, v, self.num_heads)), None


class SplitAttentionPool2d(_Split):
    """open_clip's AttentionPool2d: mean token + positional embedding, attention of the mean token only
    (the only output it returns), separate q/k/v projections and c_proj (split linears)."""

    def __init__(self, coef, module: oc_resnet.AttentionPool2d, delta):
        super().__init__(coef, module, delta, ["positional_embedding"])
        self.q_proj, self.k_proj, self.v_proj, self.c_proj = module.q_proj, module.k_proj, module.v_proj, module.c_proj
        self.num_heads = module.num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        x = x + self.per_sample("positional_embedding", x.dtype)
        out = _attention(self.q_proj(x[:, :1]), self.k_proj(x), self.v_proj(x), self.num_heads)
        return self.c_proj(out)[:, 0]


class SplitVisionTransformer(_Split):
    """open_clip's VisionTransformer with per-sample class embedding, positional embedding and ``proj``."""

    def __init__(self, coef, module: oc_transformer.VisionTransformer, delta):
        if module.attn_pool is not None or module.pool_type not in ("tok", "avg") or module.output_tokens:
            raise UncoveredOpError("VisionTransformer is covered with pool_type 'tok' or 'avg', no attentional "
                                   "pooler and output_tokens=False only")
        if not module.transformer.batch_first:
            raise UncoveredOpError("VisionTransformer is covered with a batch-first transformer only")
        super().__init__(coef, module, delta, ["class_embedding", "positional_embedding", "proj"])
        for child in ("conv1", "patch_dropout", "ln_pre", "transformer", "ln_post"):
            setattr(self, child, getattr(module, child))
        self.pool_type, self.final_ln_after_pool = module.pool_type, module.final_ln_after_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (B, grid**2, width)
        cls = self.per_sample("class_embedding", x.dtype)[:, None]
        x = torch.cat([cls, x], dim=1) + self.per_sample("positional_embedding", x.dtype)
        x = self.transformer(self.ln_pre(self.patch_dropout(x)))
        if not self.final_ln_after_pool:
            x = self.ln_post(x)
        pooled = x[:, 1:].mean(dim=1) if self.pool_type == "avg" else x[:, 0]
        if self.final_ln_after_pool:
            pooled = self.ln_post(pooled)
        if self.proj is None:
            return pooled
        base, tangent = pooled @ self.proj.to(pooled.dtype), pooled @ self.proj_delta.to(pooled.dtype)
        return base + self.lam(2, tangent.dtype) * tangent


COVERED: dict[type, Callable] = {
    nn.Linear: SplitLinear,
    nn.modules.linear.NonDynamicallyQuantizableLinear: SplitLinear,
    nn.Conv2d: SplitConv2d,
    nn.LayerNorm: SplitLayerNorm,
    oc_transformer.LayerNorm: SplitLayerNorm,
    oc_transformer.LayerNormFp32: SplitLayerNorm,
    nn.BatchNorm2d: SplitBatchNorm2d,
    nn.MultiheadAttention: SplitMultiheadAttention,
    oc_resnet.AttentionPool2d: SplitAttentionPool2d,
    oc_transformer.VisionTransformer: SplitVisionTransformer,
}
"""Parameterised ops, by exact type, and their split forms."""

PASSIVE: tuple[type, ...] = (
    ImageClassifier, nn.Sequential, nn.ModuleList, nn.Identity, nn.ReLU, nn.GELU, nn.AvgPool2d, nn.Dropout,
    oc_transformer.QuickGELU, oc_transformer.PatchDropout, oc_transformer.ResidualAttentionBlock,
    oc_transformer.Transformer, oc_resnet.Bottleneck, oc_resnet.ModifiedResNet,
)
"""Modules without parameters of their own whose forward only calls their children (or none): kept as they are."""


def _split(module: nn.Module, prefix: str, delta: dict[str, torch.Tensor], coef: _Coefficients) -> nn.Module:
    kind = type(module)
    where = prefix.rstrip(".") or "the model"
    if kind not in COVERED and kind not in PASSIVE:
        raise UncoveredOpError(f"{where} is of type {kind.__module__}.{kind.__qualname__}, which the batched "
                               "per-sample evaluator does not cover; evaluate this architecture with the loop "
                               "(config evaluation.per_sample: loop, or LoopPerSampleEvaluator)")
    if kind is oc_transformer.ResidualAttentionBlock and hasattr(module, "ln_1_kv"):
        raise UncoveredOpError(f"{where} is a cross-attention block, which is not covered")
    for name, child in list(module.named_children()):
        setattr(module, name, _split(child, f"{prefix}{name}.", delta, coef))
    if kind in COVERED:
        own = {n: delta[prefix + n] for n, t in [*module.named_parameters(recurse=False),
                                               *module.named_buffers(recurse=False)] if t.is_floating_point()}
        return COVERED[kind](coef, module, own)
    return module


class SplitClassifier(nn.Module):
    """``forward(images, coefficients)``: the logits of each image under its own theta0 + l_i (theta1 - theta0)."""

    def __init__(self, model: nn.Module, coef: _Coefficients):
        super().__init__()
        self.model, self._coef = model, coef

    def forward(self, images: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        coefficients = torch.as_tensor(coefficients, device=images.device).reshape(-1)
        if len(coefficients) != len(images):
            raise ValueError(f"{len(coefficients)} coefficients for a batch of {len(images)} images")
        self._coef.value = coefficients
        try:
            return self.model(images)
        finally:
            self._coef.value = None


def split_classifier(model0: nn.Module, model1: nn.Module) -> SplitClassifier:
    """The pair (model0, model1) as one :class:`SplitClassifier` (model0 is copied, neither is changed).

    Raises :class:`UncoveredOpError` naming the first module that is not covered.
    """
    import copy

    sd0, sd1 = model0.state_dict(), model1.state_dict()
    same_keys(sd0, sd1)
    delta = {k: (sd1[k] - sd0[k]).detach() for k in sd0 if sd0[k].is_floating_point()}
    coef = _Coefficients()
    return SplitClassifier(_split(copy.deepcopy(model0).eval(), "", delta, coef), coef).eval()
