"""Checkpoint conversion (SPEC section 4): every upstream format -> one safetensors classifier + JSON sidecar.

All models are random and tiny (ViTs registered inline), except one ViT-B-32 model-soups case; no network.
"""

import json
import pickle
import sys
import types

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dawin.inputs import convert, models
from dawin.inputs.models import CheckpointError
from dawin.tensorio import read_metadata

torch.set_num_threads(1)

QG = "test-tiny-vit-quickgelu"   # QuickGELU tiny ViT (like OpenAI CLIP)
OAI = "test-oai-vit-quickgelu"   # widths that OpenAI's state-dict loader can infer (64 per attention head)
GELU = "test-tiny-vit"           # same shapes, nn.GELU
P4 = "test-tiny-vit-p4"          # other patch size and width: a different architecture


def _cfg(patch: int, width: int, quick_gelu: bool) -> dict:
    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": width, "head_width": 32, "patch_size": patch},
           "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    if quick_gelu:
        cfg["quick_gelu"] = True
    return cfg


@pytest.fixture(scope="module", autouse=True)
def tiny_vits(tmp_path_factory):
    d = tmp_path_factory.mktemp("model_configs")
    oai = _cfg(8, 128, True)
    oai["vision_cfg"]["head_width"] = oai["text_cfg"]["width"] = 64
    oai["text_cfg"]["heads"] = 1
    for name, cfg in ((QG, _cfg(8, 64, True)), (GELU, _cfg(8, 64, False)), (P4, _cfg(4, 96, True)), (OAI, oai)):
        (d / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d)


def _clip(arch: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = open_clip.create_model(arch).eval()
    with torch.no_grad():  # make every tensor matter (LayerNorms default to 1/0, biases to 0)
        for p in model.visual.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _head(n_cls: int = 5, dim: int = 32, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_cls, dim, generator=g), torch.randn(n_cls, generator=g)


def _expected(encode, x, w, b):
    with torch.no_grad():
        return F.normalize(encode(x), dim=-1) @ w.T + b


def _soups_file(path, clip, w, b, wrap=False):
    state = {f"model.{k}": v for k, v in clip.state_dict().items() if not k.startswith("transformer.")}
    state.update({"classification_head.weight": w, "classification_head.bias": b})
    torch.save({"state_dict": state} if wrap else state, path)
    return path


# ------------------------------------------------------------------------------------------ model-soups


@pytest.mark.parametrize("wrap", [False, True])
def test_model_soups_logits_match_source(tmp_path, wrap):
    clip, (w, b) = _clip(QG, 0), _head()
    src = _soups_file(tmp_path / "model_3.pt", clip, w, b, wrap=wrap)
    model = convert.convert_model_soups(src, QG)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), _expected(clip.encode_image, x, w, b), atol=1e-5)


def test_model_soups_vit_b32(tmp_path):
    """The real architecture: model-soups B/32 keys (OpenAI CLIP without text transformer) fit ViT-B-32-quickgelu."""
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32-quickgelu").eval()
    w, b = _head(3, 512)
    src = _soups_file(tmp_path / "b32.pt", clip, w, b)
    model = convert.convert_model_soups(src, "ViT-B-32-quickgelu")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), _expected(clip.encode_image, x, w, b), atol=1e-5)
    with pytest.raises(CheckpointError, match="ViT-B-32-quickgelu"):  # GELU ViT-B-32 is refused, naming the fix
        convert.convert_model_soups(src, "ViT-B-32")


def test_wrong_architecture_is_refused_by_name(tmp_path):
    src = _soups_file(tmp_path / "m.pt", _clip(QG, 0), *_head())
    with pytest.raises(CheckpointError) as e:
        convert.convert_model_soups(src, P4)
    msg = str(e.value)
    assert f"a {GELU}-shaped checkpoint" in msg and f"also fits {QG}" in msg and f"does not match {P4}" in msg
    assert "visual.conv1.weight has shape (64, 3, 8, 8), expected (96, 3, 4, 4)" in msg
    with pytest.raises(CheckpointError, match="unknown architecture"):
        convert.convert_model_soups(src, "ViT-Q-99")
    with pytest.raises(CheckpointError, match=r"head weight has shape \(5, 16\)"):
        convert.convert_model_soups(_soups_file(tmp_path / "h.pt", _clip(QG, 0), *_head(5, 16)), QG)


def test_quick_gelu_mismatch_is_refused(tmp_path):
    src = _soups_file(tmp_path / "m.pt", _clip(QG, 0), *_head())
    with pytest.raises(CheckpointError, match=f"uses quick_gelu but {GELU} uses gelu"):
        convert.convert_model_soups(src, GELU)


# ------------------------------------------------------------------------------------- pickled modules


class _Namespace:
    pass


@pytest.fixture
def fake_src_modeling():
    """A stand-in for task_vectors' ``src.modeling`` that exists only while pickling."""
    saved = {k: sys.modules.get(k) for k in ("src", "src.modeling")}
    pkg, mod = types.ModuleType("src"), types.ModuleType("src.modeling")
    pkg.__path__, pkg.modeling = [], mod

    class ImageEncoder(torch.nn.Module):
        def __init__(self, clip, keep_lang=False):
            super().__init__()
            self.model = clip
            self.train_preprocess = self.val_preprocess = models.preprocess(clip)  # torchvision + open_clip objs
            self.cache_dir = None
            if not keep_lang:
                delattr(self.model, "transformer")

        def forward(self, images):
            return self.model.encode_image(images)

    class ClassificationHead(torch.nn.Linear):
        def __init__(self, normalize, weights, biases):
            super().__init__(weights.shape[1], weights.shape[0])
            self.normalize = normalize
            self.weight = torch.nn.Parameter(weights.clone())
            self.bias = torch.nn.Parameter(biases.clone())

    class ImageClassifier(torch.nn.Module):
        def __init__(self, image_encoder, classification_head):
            super().__init__()
            self.image_encoder, self.classification_head = image_encoder, classification_head

    for cls in (ImageEncoder, ClassificationHead, ImageClassifier):
        cls.__module__, cls.__qualname__ = "src.modeling", cls.__name__
        setattr(mod, cls.__name__, cls)
    sys.modules.update({"src": pkg, "src.modeling": mod})
    ns = _Namespace()
    ns.ImageEncoder, ns.ClassificationHead, ns.ImageClassifier = ImageEncoder, ClassificationHead, ImageClassifier

    def remove():
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v

    ns.remove = remove
    yield ns
    remove()


def test_pickled_modules_logits_match_source(tmp_path, fake_src_modeling):
    m = fake_src_modeling
    clip, (w, b) = _clip(QG, 1), _head()
    enc, head = m.ImageEncoder(clip), m.ClassificationHead(True, w, b)
    torch.save(enc, tmp_path / "finetuned.pt")
    torch.save(head, tmp_path / "head_SVHN.pt")
    torch.save(enc, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)  # torch's pre-1.6 format
    with open(tmp_path / "wiseft.pt", "wb") as f:  # WiSE-FT style: pickle.dump of a whole classifier
        pickle.dump(m.ImageClassifier(enc, head), f)
    m.remove()
    assert "src.modeling" not in sys.modules

    x = torch.randn(3, 3, 32, 32)
    expected = _expected(clip.encode_image, x, w, b)
    sha = models.sha256(tmp_path / "finetuned.pt")
    model = convert.convert_pickled_modules(tmp_path / "finetuned.pt", tmp_path / "head_SVHN.pt", QG,
                                            expected_encoder_sha256=sha)
    whole = convert.convert_pickled_modules(tmp_path / "wiseft.pt", None, QG)
    legacy = convert.convert_pickled_modules(tmp_path / "legacy.pt", tmp_path / "head_SVHN.pt", QG)
    with torch.no_grad():
        for converted in (model, whole, legacy):
            assert torch.allclose(converted(x), expected, atol=1e-5)
    # the pickled tower carries its activation: a QuickGELU pickle does not go into a GELU architecture
    with pytest.raises(CheckpointError, match="quick_gelu"):
        convert.convert_pickled_modules(tmp_path / "finetuned.pt", tmp_path / "head_SVHN.pt", GELU)


def test_adamerging_heads_pickled_as_top_level_modeling(tmp_path, fake_src_modeling):
    # AdaMerging's README runs its scripts from src/, so its heads.py pickles `modeling.ClassificationHead`
    clip, (w, b) = _clip(QG, 1), _head()
    torch.save(fake_src_modeling.ImageEncoder(clip), tmp_path / "finetuned.pt")
    top = types.ModuleType("modeling")

    class ClassificationHead(fake_src_modeling.ClassificationHead):
        pass

    ClassificationHead.__module__, ClassificationHead.__qualname__ = "modeling", "ClassificationHead"
    top.ClassificationHead = ClassificationHead
    sys.modules["modeling"] = top
    try:
        torch.save(ClassificationHead(True, w, b), tmp_path / "head_SVHN.pt")
    finally:
        sys.modules.pop("modeling")
    fake_src_modeling.remove()
    x = torch.randn(2, 3, 32, 32)
    model = convert.convert_pickled_modules(tmp_path / "finetuned.pt", tmp_path / "head_SVHN.pt", QG)
    with torch.no_grad():
        assert torch.allclose(model(x), _expected(clip.encode_image, x, w, b), atol=1e-5)
    assert "modeling" not in sys.modules


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_forbidden_globals_are_refused_by_name(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": _Evil(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refusing to unpickle global posix\.system"):
        convert.convert_pickled_modules(tmp_path / "evil.pt", None, QG)
    (tmp_path / "eval.pkl").write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")  # plain pickle, protocol 0
    with pytest.raises(CheckpointError, match=r"builtins\.eval"):
        convert.load_pickled(tmp_path / "eval.pkl")
    assert not marker.exists()


def test_wrong_sha256_is_refused_naming_both(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "finetuned.pt")
    actual, wrong = models.sha256(tmp_path / "finetuned.pt"), "0" * 64
    with pytest.raises(CheckpointError) as e:
        convert.convert_pickled_modules(tmp_path / "finetuned.pt", None, QG, expected_encoder_sha256=wrong)
    assert "finetuned.pt" in str(e.value) and actual in str(e.value) and wrong in str(e.value)


# ---------------------------------------------------------------------------------------------- HF CLIP


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.CLIPVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                                        num_attention_heads=2, image_size=32, patch_size=8, projection_dim=32,
                                        hidden_act="quick_gelu")
    torch.manual_seed(3)
    model = transformers.CLIPVisionModelWithProjection(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = tmp_path_factory.mktemp("hf") / "clip-vit-tiny_svhn"
    model.save_pretrained(d)
    return model, d


def test_hf_clip_vision_logits_match_source(hf_model):
    hf, d = hf_model
    w, b = _head()
    model = convert.convert_hf_clip_vision(d, w, b, QG)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = _expected(lambda t: hf(pixel_values=t).image_embeds, x, w, b)
        assert torch.allclose(model(x), expected, atol=1e-5)
    # a bare CLIPVisionModel state dict (FusionBench) + the projection taken from the base model
    state = {k: v for k, v in hf.state_dict().items() if k.startswith("vision_model.")}
    bare = convert.convert_hf_clip_vision(state, w, b, QG, hidden_act="quick_gelu",
                                          visual_projection=hf.visual_projection.weight)
    with torch.no_grad():
        assert torch.allclose(bare(x), expected, atol=1e-5)
    with pytest.raises(CheckpointError, match="visual_projection"):
        convert.convert_hf_clip_vision(state, w, b, QG, hidden_act="quick_gelu")
    with pytest.raises(CheckpointError, match=f"use the QuickGELU architecture '{QG}'"):
        convert.convert_hf_clip_vision(d, w, b, GELU)


# ------------------------------------------------------------------------------------ convert + sidecar


def test_convert_writes_classifier_and_sidecar(tmp_path, hf_model):
    clip, (w, b) = _clip(QG, 2), _head()
    src = _soups_file(tmp_path / "model_5.pt", clip, w, b)
    sha = models.sha256(src)
    out = tmp_path / "converted" / "ft.safetensors"
    record = convert.convert("model-soups", {"checkpoint": src}, QG, out,
                             urls={"checkpoint": "https://example.org/model_5.pt"}, expected_sha256={"checkpoint": sha})
    side = json.loads((tmp_path / "converted" / "ft.safetensors.json").read_text())
    assert side == record
    assert side["sources"]["checkpoint"]["sha256"] == sha
    assert side["sources"]["checkpoint"]["url"] == "https://example.org/model_5.pt"
    assert side["converter_version"] == convert.CONVERTER_VERSION and side["architecture"] == QG
    assert side["sha256"] == models.sha256(out)
    meta = read_metadata(out)
    assert meta["source_sha256"] == f"checkpoint={sha}" and meta["converter_version"] == convert.CONVERTER_VERSION
    loaded = models.ImageClassifier.load(out, QG)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), _expected(clip.encode_image, x, w, b), atol=1e-5)
    with pytest.raises(CheckpointError, match="holds a"):
        models.ImageClassifier.load(out, GELU)
    with pytest.raises(CheckpointError, match="expected " + "f" * 64):
        convert.convert("model-soups", {"checkpoint": src}, QG, tmp_path / "x.safetensors",
                        expected_sha256={"checkpoint": "f" * 64})

    # HF directory + head file: the sidecar pins the directory digest and lists its files
    hf, d = hf_model
    save_file({"weight": w.contiguous(), "bias": b.contiguous()}, tmp_path / "head.safetensors")
    rec = convert.convert("hf-clip-vision", {"model": d, "head": tmp_path / "head.safetensors"}, QG,
                          tmp_path / "hf.safetensors")
    assert set(rec["sources"]["model"]["files"]) == {"config.json", "model.safetensors"}
    assert rec["sources"]["model"]["sha256"] == convert.source_digest(d)[0]
    models.ImageClassifier.load(tmp_path / "hf.safetensors", QG)


def _openai_release(path, seed=3):
    """A CLIP saved as OpenAI released theirs: a traced TorchScript archive of float16-valued weights whose
    state dict has OpenAI's keys (no attn_mask buffer, an ``input_resolution`` entry)."""
    model = _clip(OAI, seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    mask = model._buffers.pop("attn_mask")
    model.attn_mask = mask
    model.register_buffer("input_resolution", torch.tensor(32))
    traced = torch.jit.trace(model, (torch.randn(1, 3, 32, 32), torch.zeros(1, 8, dtype=torch.long)), strict=False,
                          check_trace=False)
    torch.jit.save(traced, path)
    del model.input_resolution, model.attn_mask
    model.register_buffer("attn_mask", mask, persistent=False)
    return model


def test_openai_release_keeps_the_text_tower(tmp_path):
    source = _openai_release(tmp_path / "ViT-B-32.pt")
    record = convert.convert("openai-clip", {"checkpoint": tmp_path / "ViT-B-32.pt"}, OAI, tmp_path / "oai.safetensors",
                             urls={"checkpoint": "https://openaipublic.azureedge.net/clip/models/x/ViT-B-32.pt"})
    assert record["format"] == models.CLIP_FORMAT
    clip = models.create_clip(OAI, weights=tmp_path / "oai.safetensors")
    x, text = torch.randn(2, 3, 32, 32), torch.randint(0, 49408, (2, 8))
    with torch.no_grad():
        assert torch.equal(clip.encode_image(x), source.encode_image(x))
        assert torch.equal(clip.encode_text(text), source.encode_text(text))
    with pytest.raises(CheckpointError, match="not a test-tiny-vit-quickgelu checkpoint"):
        convert.convert("openai-clip", {"checkpoint": tmp_path / "ViT-B-32.pt"}, QG, tmp_path / "qg.safetensors")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not an OpenAI CLIP release"):
        convert.convert("openai-clip", {"checkpoint": tmp_path / "junk.pt"}, OAI, tmp_path / "j.safetensors")


def test_an_encoder_without_head_takes_a_workflow_head(tmp_path, fake_src_modeling):
    # task_vectors' zeroshot.pt is an ImageEncoder alone; the classifier file gets a zero-shot head we built
    clip, (w, b) = _clip(QG, 2), _head()
    torch.save(fake_src_modeling.ImageEncoder(clip), tmp_path / "zeroshot.pt")
    fake_src_modeling.remove()
    save_file({"weight": w, "bias": b}, str(tmp_path / "head.safetensors"))
    convert.convert("pickled-modules", {"encoder": tmp_path / "zeroshot.pt", "head": tmp_path / "head.safetensors"}, QG,
                    tmp_path / "tv-zeroshot.safetensors")
    model = models.ImageClassifier.load(tmp_path / "tv-zeroshot.safetensors", QG)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), _expected(clip.encode_image, x, w, b), atol=1e-5)
    assert model.classnames is None  # a head file that names no classes
    models.save_head(w, tmp_path / "named.safetensors", classnames="\n".join(f"c{i}" for i in range(len(w))))
    convert.convert("pickled-modules", {"encoder": tmp_path / "zeroshot.pt", "head": tmp_path / "named.safetensors"},
                    QG, tmp_path / "named-zeroshot.safetensors")
    # its classes travel with it: the test sets it scores are checked against them (dawin.identity.check_classes)
    assert models.ImageClassifier.load(tmp_path / "named-zeroshot.safetensors").classnames == [f"c{i}" for i in range(len(w))]
