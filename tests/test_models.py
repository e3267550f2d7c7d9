import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dawin.inputs import models
from dawin.tensorio import read_metadata


def test_zeroshot_head_matches_direct_computation(tiny_clip):
    classes, templates = ["circle", "star"], ["a photo of a {c}.", "a {c}."]
    head = models.zeroshot_head(tiny_clip, "dawin-tiny-rn", classes, templates)
    tok = open_clip.get_tokenizer("dawin-tiny-rn")
    with torch.no_grad():
        rows = []
        for c in classes:
            e = F.normalize(tiny_clip.encode_text(tok([t.format(c=c) for t in templates])), dim=-1).mean(0)
            rows.append(e / e.norm())
        expected = tiny_clip.logit_scale.exp() * torch.stack(rows)
    assert head.shape == (2, 64)
    assert torch.allclose(head, expected, atol=1e-5)


def test_classifier_is_normalised_features_through_head(tiny_pair):
    m0, _ = tiny_pair
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        f = m0.visual(x)
        expected = (f / f.norm(dim=-1, keepdim=True)) @ m0.head.weight.T + m0.head.bias
        assert torch.allclose(m0(x), expected, atol=1e-5)


def test_save_load_roundtrip(tmp_path, tiny_pair):
    m0, _ = tiny_pair
    m0.save(tmp_path / "m.safetensors", source="test")
    back = models.ImageClassifier.load(tmp_path / "m.safetensors", "dawin-tiny-rn")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back(x), m0(x))
    assert read_metadata(tmp_path / "m.safetensors")["source"] == "test"


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(models.CheckpointError, match="checkpoint not found: .*nothing.safetensors"):
        models.ImageClassifier.load(tmp_path / "nothing.safetensors")


def test_wrong_architecture_is_refused_by_name(tmp_path, tiny_pair):
    m0, _ = tiny_pair
    m0.save(tmp_path / "m.safetensors")
    with pytest.raises(models.CheckpointError, match="holds a dawin-tiny-rn classifier, the config expects ViT-B-32"):
        models.ImageClassifier.load(tmp_path / "m.safetensors", "ViT-B-32")
    # a file that claims the right architecture but has other shapes
    state = {k: v for k, v in m0.state_dict().items()}
    state["visual.conv1.weight"] = torch.zeros(96, 3, 4, 4)
    save_file(state, str(tmp_path / "bad.safetensors"), metadata={"format": models.CLASSIFIER_FORMAT, "architecture": "dawin-tiny-rn"})
    with pytest.raises(models.CheckpointError, match="is not a dawin-tiny-rn checkpoint .*shape mismatch"):
        models.ImageClassifier.load(tmp_path / "bad.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "raw.safetensors"))
    with pytest.raises(models.CheckpointError, match="not a DaWin classifier file"):
        models.ImageClassifier.load(tmp_path / "raw.safetensors")


def test_a_classifier_of_another_task_is_refused_by_name(tmp_path, tiny_clip, tiny_pair):
    """A fine-tuned checkpoint replaced by one of another task (a head of 4 classes, not 10): refused where it is
    combined with the zero-shot model, and where its logits would be scored against a 10-class test set."""
    from types import SimpleNamespace

    from dawin.inference.logits import projected
    from dawin.inputs.datasets import identity_projection, subset_projection

    m0, _ = tiny_pair
    other = models.ImageClassifier.from_clip(tiny_clip, "dawin-tiny-rn", torch.randn(4, 64))
    other.save(tmp_path / "other.safetensors")
    with pytest.raises(models.CheckpointError, match="other.safetensors has a head of 4 classes, the model it is "
                                                     "combined with has 10"):
        models.ImageClassifier.load(tmp_path / "other.safetensors", like=m0)
    data = SimpleNamespace(name="toy", root="data/toy", classnames=[f"c{i}" for i in range(10)])
    z = torch.randn(5, 4)
    for project in (identity_projection(), subset_projection([0, 9, 2, 3, 4, 5, 6, 7, 8, 1])):
        with pytest.raises(ValueError, match=r"ft on toy: the model's head has 4 classes, which do not give the 10 "
                                             r"classes of dataset toy \(data/toy\)"):
            projected(project, z, data, "ft on toy")
    assert projected(identity_projection(), torch.randn(5, 10), data, "ft").shape == (5, 10)


def test_clip_weights_roundtrip_and_architecture_check(tmp_path, tiny_clip):
    models.save_clip(tiny_clip, "dawin-tiny-rn", tmp_path / "clip.safetensors")
    back = models.create_clip("dawin-tiny-rn", weights=tmp_path / "clip.safetensors")
    assert torch.equal(back.visual.conv1.weight, tiny_clip.visual.conv1.weight)
    with pytest.raises(models.CheckpointError, match="holds a dawin-tiny-rn model, the config says ViT-B-32"):
        models.create_clip("ViT-B-32", weights=tmp_path / "clip.safetensors")
    with pytest.raises(models.CheckpointError, match="unknown architecture 'ViT-X'"):
        models.create_clip("ViT-X")


def test_head_cache_key_is_a_content_key(tmp_path):
    k = models.head_cache_key("ViT-B-32-quickgelu", "open_clip:openai", ["cat", "dog"], ["a {c}."])
    assert k == models.head_cache_key("ViT-B-32-quickgelu", "open_clip:openai", ["cat", "dog"], ["a {c}."])
    for other in (models.head_cache_key("ViT-B-32-quickgelu", "open_clip:openai", ["cat", "dog"], ["a photo of a {c}."]),
                  models.head_cache_key("ViT-B-32-quickgelu", "sha256:00", ["cat", "dog"], ["a {c}."]),
                  models.head_cache_key("ViT-B-32-quickgelu", "open_clip:openai", ["dog", "cat"], ["a {c}."])):
        assert other != k
    models.save_head(torch.ones(2, 3), tmp_path / "h.safetensors", architecture="x", cache_key=k)
    w, meta = models.load_head(tmp_path / "h.safetensors")
    assert torch.equal(w, torch.ones(2, 3)) and meta["cache_key"] == k


def test_architectures_known_without_importing_open_clip_are_open_clips_list():
    from dawin.inputs.architectures import check_architectures, known_architectures

    import json
    import subprocess
    import sys

    # in a fresh interpreter: other tests register more configs with open_clip in this one
    listed = subprocess.run([sys.executable, "-c", "import json, open_clip, dawin.inputs.models; "
                             "print(json.dumps(open_clip.list_models()))"], capture_output=True, text=True, check=True)
    assert known_architectures() == set(json.loads(listed.stdout.splitlines()[-1]))  # with ours (models.py)
    check_architectures({"backbones.b.architecture": "ViT-B-32-quickgelu"})
    with pytest.raises(ValueError, match=r"backbones.b.architecture: unknown architecture 'ViT-B-32-quickgelux'; "
                                         r"did you mean ViT-B-32-quickgelu"):
        check_architectures({"backbones.b.architecture": "ViT-B-32-quickgelux"})


def test_open_clip_loads_without_timm_transformers_and_dynamo_and_their_towers_are_refused_early():
    """dawin.inputs.openclip keeps timm, transformers and TorchDynamo out of every job's start-up; the architectures
    that would need the first two are refused when the config is read, naming the tower; all three stay importable
    afterwards, and torchvision's roi_align (the one user of the TorchDynamo stand-in) gives its usual answer."""
    import subprocess
    import sys

    from dawin.inputs.architectures import check_architectures

    code = ("import sys, torch, dawin.inputs.models as m; "
            "print(sorted(k for k in ('timm', 'transformers', 'torch._dynamo') if k in sys.modules)); "
            "import timm, transformers, torch._dynamo.utils as u; assert u.__file__; m.create_clip('dawin-tiny-rn'); "
            "from torchvision.ops import roi_align; x = torch.arange(16.).reshape(1, 1, 4, 4); "
            "print(roi_align(x, [torch.tensor([[0., 0., 4., 4.]])], 1, aligned=True).item())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "7.5"]  # one bin over the whole 4 x 4 map: samples at the pixels themselves, mean 0..15
    for name, tower in (("convnext_base", "vision_cfg.timm_model_name"), ("roberta-ViT-B-32", "text_cfg.hf_model_name")):
        with pytest.raises(ValueError, match=rf"config k: architecture '{name}' has a tower from timm or Hugging Face "
                                             rf"\({tower}\)"):
            check_architectures({"k": name})


def test_a_zero_shot_head_with_equal_class_rows_is_refused():
    clip = models.create_clip("dawin-tiny-rn")
    with pytest.raises(ValueError, match="all 3 class embeddings are equal"):
        models.zeroshot_head(clip, "dawin-tiny-rn", ["dog", "dog", "dog"], ["a photo of a {c}."])
    assert models.zeroshot_head(clip, "dawin-tiny-rn", ["dog", "cat"], ["a photo of a {c}."]).shape[0] == 2


def test_a_classifier_file_without_its_head_names_the_file(tmp_path):
    from dawin.tensorio import save_tensors

    clip = models.create_clip("dawin-tiny-rn")
    clf = models.ImageClassifier.from_clip(clip, "dawin-tiny-rn", torch.randn(3, clip.visual.output_dim))
    path = tmp_path / "headless.safetensors"
    save_tensors(path, {k: v for k, v in clf.state_dict().items() if not k.startswith("head.")},
                 {"format": models.CLASSIFIER_FORMAT, "architecture": "dawin-tiny-rn"})
    with pytest.raises(models.CheckpointError, match=f"{path} has no head tensors"):
        models.ImageClassifier.load(path)
