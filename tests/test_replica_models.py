"""Checkpoint replicas (dawin.replicas.models): every upstream form converts to the replica architecture with the
logits its own weights compute, the pickles name the upstream classes, and every source of config/paper.yaml is
written where the fetch code looks."""

import hashlib
import pickletools
import sys
import zipfile
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file

from dawin.inputs import checkpoints, convert, models
from dawin.inputs.multitask_datasets import task_info
from dawin.replicas import models as R
from dawin.tensorio import read_metadata

torch.set_num_threads(1)
ARCH = R.ARCHITECTURE
EMBED = open_clip.get_model_config(ARCH)["embed_dim"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bb():
    return R.make_backbone("ViT-B-32-quickgelu", seed=0)


def _pickle_bytes(path: Path) -> bytes:
    if zipfile.is_zipfile(path):  # torch.save: the pickle is <archive>/data.pkl
        with zipfile.ZipFile(path) as z:
            return z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    return path.read_bytes()


def _globals(path: Path) -> set[str]:
    """``module name`` of every GLOBAL / STACK_GLOBAL in the file's pickle."""
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(_pickle_bytes(path)):
        if op.name == "GLOBAL":
            found.add(arg)
        elif op.name == "STACK_GLOBAL":
            found.add(f"{strings[-2]} {strings[-1]}")
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _upstream_state() -> tuple:
    """What pickling as the upstream temporarily changes: must be the same before and after."""
    return (tuple(sys.modules.get(n) for n in R._STAND_IN_MODULES), sys.modules["open_clip.model"],
            hasattr(torch.nn.modules.linear, "_LinearWithBias"))


def _logits(features: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(features, dim=-1) @ w.T + b


def test_architecture_is_what_openai_loaders_infer(bb):
    cfg = open_clip.get_model_config(ARCH)
    rebuilt = open_clip.model.build_model_from_openai_state_dict({k: v.half() for k, v in bb.state.items()})
    assert rebuilt.visual.transformer.resblocks[0].attn.num_heads == cfg["vision_cfg"]["width"] // 64
    assert rebuilt.transformer.resblocks[0].attn.num_heads == cfg["text_cfg"]["heads"]
    assert set(rebuilt.state_dict()) == set(bb.state) and all(v.half().float().equal(v) for v in bb.state.values())


def test_openai_release(tmp_path, bb):
    path = R.write_openai_release(bb, tmp_path / "ViT-B-32.pt")
    archive = torch.jit.load(str(path)).state_dict()
    assert {"input_resolution", "context_length", "vocab_size"} <= set(archive) and "attn_mask" not in archive
    assert {v.dtype for k, v in archive.items() if v.is_floating_point()} == {torch.float16}
    R.write_openai_release(bb, tmp_path / "again" / "ViT-B-32.pt")
    assert _sha(path) == _sha(tmp_path / "again" / "ViT-B-32.pt")  # deterministic bytes
    convert.convert("openai-clip", {"checkpoint": path}, ARCH, tmp_path / "oai.safetensors")
    clip, source = models.create_clip(ARCH, weights=tmp_path / "oai.safetensors"), bb.clip()
    x, text = torch.randn(2, 3, 32, 32), open_clip.get_tokenizer(ARCH)(["a photo of a dog.", "a cat"])
    with torch.no_grad():
        assert torch.equal(clip.encode_image(x), source.encode_image(x))
        assert torch.equal(clip.encode_text(text), source.encode_text(text))


def _oai_clip(bb, state):
    """model-soups' CLIP (OpenAI clip.model) holding a model-soups state dict's ``model.*`` weights."""
    cfg = bb.cfg
    vc, tc = cfg["vision_cfg"], cfg["text_cfg"]
    clip = R.OAICLIP(cfg["embed_dim"], vc["image_size"], vc["layers"], vc["width"], vc["patch_size"],
                     tc["context_length"], tc["vocab_size"], tc["width"], tc["heads"], tc["layers"])
    del clip.transformer
    clip.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return clip.eval()


def test_model_soups(tmp_path, bb):
    state = R.soups_run_state(bb, 5, "soup-ViT-B-32")
    path = R.write_model_soups(state, tmp_path / "model_5.pt")
    loaded = torch.load(path, weights_only=True)
    keys = list(loaded)
    # model-soups' ModelWrapper: CLIP without its text transformer, in clip.model's order, then the head
    assert len(keys) == 40 and keys[:3] == ["model.positional_embedding", "model.text_projection", "model.logit_scale"]
    assert set(keys) == {f"model.{k}" for k in bb.state if not k.startswith("transformer.")} | {
        "classification_head.weight", "classification_head.bias"} and keys[-2:] == ["classification_head.weight",
                                                                                    "classification_head.bias"]
    assert all(v.dtype == torch.float32 for v in loaded.values())
    assert loaded["classification_head.weight"].shape == (1000, EMBED)
    R.write_model_soups(R.soups_run_state(bb, 5, "soup-ViT-B-32"), tmp_path / "again" / "model_5.pt")
    assert _sha(path) == _sha(tmp_path / "again" / "model_5.pt")

    convert.convert("model-soups", {"checkpoint": path}, ARCH, tmp_path / "ft.safetensors")
    model = models.ImageClassifier.load(tmp_path / "ft.safetensors", ARCH)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = _logits(_oai_clip(bb, loaded).encode_image(x), loaded["classification_head.weight"],
                           loaded["classification_head.bias"])
        assert torch.allclose(model(x), expected, atol=1e-5)

    # run 0 is the LP initialisation (theta0's tower); the other runs are distinct, nearby fine-tunes
    lp, r1, r2 = (R.soups_run_state(bb, i, "soup-ViT-B-32") for i in (0, 1, 2))
    k = "model.visual.conv1.weight"
    assert torch.equal(lp[k], bb.state["visual.conv1.weight"]) and not torch.equal(r1[k], r2[k])
    assert 0 < (r1[k] - lp[k]).norm() / lp[k].norm() < 0.2
    assert torch.equal(r1["model.token_embedding.weight"], bb.state["token_embedding.weight"])  # text untouched


def test_wiseft_pickle(tmp_path, bb):
    before = _upstream_state()
    clf = R.wiseft_classifier(bb, bb.finetuned_visual("imagenet", "wise"), *bb.finetuned_head("wise"))
    path = tmp_path / "finetuned.pt"
    R.pickle_dump(clf, path)
    assert _upstream_state() == before  # the stand-in modules and _LinearWithBias are gone again
    assert not zipfile.is_zipfile(path) and path.read_bytes()[:2] == b"\x80\x03"  # pickle.dump, protocol 3
    names = _globals(path)
    for want in ("src.models.modeling ImageClassifier", "src.models.modeling ImageEncoder",
                 "src.models.modeling ClassificationHead", "clip.model CLIP", "clip.model VisualTransformer",
                 "clip.model Transformer", "clip.model ResidualAttentionBlock", "clip.model QuickGELU",
                 "clip.model LayerNorm", "torch.nn.modules.linear _LinearWithBias", "clip.clip _convert_to_rgb",
                 "torch.storage _load_from_bytes"):
        assert want in names, want
    R.pickle_dump(clf, tmp_path / "again.pt")
    assert _sha(path) == _sha(tmp_path / "again.pt")  # storage keys made deterministic

    convert.convert("pickled-modules", {"encoder": path}, ARCH, tmp_path / "b16.safetensors")
    model = models.ImageClassifier.load(tmp_path / "b16.safetensors", ARCH)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), clf(x), atol=1e-5)


def test_task_vectors_encoders_and_heads(tmp_path, bb):
    before = _upstream_state()
    info = task_info("svhn")
    zeroshot = R.task_vectors_encoder(bb, {}, finetuned=False)
    expert = R.task_vectors_encoder(bb, bb.finetuned_visual("task/svhn", "tv", direction_scale=0.1), finetuned=True)
    head = R.task_vectors_head(bb, info.classnames, info.templates)
    for obj, name in ((zeroshot, "zeroshot.pt"), (expert, "finetuned.pt"), (head, "head_SVHN.pt")):
        R.torch_save_module(obj, tmp_path / name)
    assert _upstream_state() == before
    names = _globals(tmp_path / "finetuned.pt")
    for want in ("src.modeling ImageEncoder", "open_clip.model CLIP", "open_clip.model VisualTransformer",
                 "open_clip.model Transformer", "open_clip.model ResidualAttentionBlock", "open_clip.model QuickGELU",
                 "open_clip.model LayerNorm", "open_clip.transform _convert_to_rgb",
                 "torchvision.transforms.transforms Compose"):
        assert want in names, want
    assert "src.modeling ClassificationHead" in _globals(tmp_path / "head_SVHN.pt")
    assert zipfile.is_zipfile(tmp_path / "finetuned.pt")  # torch.save, not pickle.dump

    # the head is task_vectors' zero-shot head (normalize=True, bias 0), = dawin.inputs.models.zeroshot_head
    assert head.normalize and not head.bias.any() and head.weight.shape == (10, EMBED)
    assert torch.allclose(head.weight, models.zeroshot_head(bb.clip(), ARCH, info.classnames, info.templates),
                          atol=1e-5)

    convert.convert("pickled-modules", {"encoder": tmp_path / "finetuned.pt", "head": tmp_path / "head_SVHN.pt"},
                    ARCH, tmp_path / "tv-SVHN.safetensors")
    save_file({"weight": head.weight.detach().clone()}, str(tmp_path / "zs_head.safetensors"))
    convert.convert("pickled-modules", {"encoder": tmp_path / "zeroshot.pt", "head": tmp_path / "zs_head.safetensors"},
                    ARCH, tmp_path / "tv-zeroshot.safetensors")
    ft = models.ImageClassifier.load(tmp_path / "tv-SVHN.safetensors", ARCH)
    zs = models.ImageClassifier.load(tmp_path / "tv-zeroshot.safetensors", ARCH)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ft(x), head(expert(x)), atol=1e-5)
        assert torch.allclose(zs(x), head(zeroshot(x)), atol=1e-5)
    # zeroshot.pt is theta0's tower; the expert differs from it (a meaningful task vector)
    assert torch.equal(zs.visual.conv1.weight, bb.state["visual.conv1.weight"])
    assert not torch.equal(ft.visual.conv1.weight, zs.visual.conv1.weight)


def test_hf_clip_vision_and_clip_model(tmp_path, bb):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    visual = bb.finetuned_visual("hf/svhn", "hf/svhn", direction_scale=0.1)
    vdir = R.write_hf_dir(R.hf_vision_state(bb, visual), R.hf_vision_config(bb), tmp_path / "tanganke" / "svhn")
    cdir = R.write_hf_dir(R.hf_clip_state(bb), R.hf_clip_config(bb), tmp_path / "openai" / "clip")
    assert sorted(p.name for p in vdir.iterdir()) == ["config.json", "pytorch_model.bin"]
    vstate = torch.load(vdir / "pytorch_model.bin", weights_only=True)
    assert all(k.startswith("vision_model.") for k in vstate) and len(vstate) == 39
    cstate = torch.load(cdir / "pytorch_model.bin", weights_only=True)
    assert {"visual_projection.weight", "text_projection.weight", "logit_scale",
            "text_model.embeddings.token_embedding.weight"} <= set(cstate)
    vcfg = R.hf_vision_config(bb)
    assert vcfg["architectures"] == ["CLIPVisionModel"] and vcfg["hidden_act"] == "quick_gelu"
    assert vcfg["model_type"] == "clip_vision_model" and vcfg["transformers_version"].startswith("4.")

    w = torch.randn(10, EMBED, generator=torch.Generator().manual_seed(0))
    b = torch.zeros(10)
    save_file({"weight": w, "bias": b}, str(tmp_path / "head.safetensors"))
    convert.convert("hf-clip-vision", {"model": vdir, "projection": cdir, "head": tmp_path / "head.safetensors"},
                    ARCH, tmp_path / "fb-svhn.safetensors")
    model = models.ImageClassifier.load(tmp_path / "fb-svhn.safetensors", ARCH)
    # transformers itself reads the 4.x directories; its outputs are what the converted files must reproduce
    hf_vision = transformers.CLIPVisionModel.from_pretrained(vdir).eval()
    hf_clip = transformers.CLIPModel.from_pretrained(cdir).eval()
    x = torch.randn(3, 3, 32, 32)
    text = open_clip.get_tokenizer(ARCH)(["a photo of a dog.", "a cat"])
    source = bb.clip()
    with torch.no_grad():
        features = hf_clip.visual_projection(hf_vision(pixel_values=x).pooler_output)
        assert torch.allclose(model(x), _logits(features, w, b), atol=1e-5)
        assert torch.allclose(hf_clip.get_image_features(pixel_values=x).pooler_output, source.encode_image(x),
                              atol=1e-5)
        assert torch.allclose(hf_clip.get_text_features(input_ids=text).pooler_output, source.encode_text(text),
                              atol=1e-5)


def _expanded_sources(config):
    checkpoints_, _ = R.expand_checkpoint_series(config["paper"])
    return checkpoints_, [(k, role, spec) for k, e in sorted(checkpoints_.items())
                          for role, spec in e["sources"].items()]


def test_every_paper_source_is_written(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    site, mirror = tmp_path / "site", tmp_path / "mirror"
    result = R.write_checkpoint_replicas(config, site, mirror)
    entries, sources = _expanded_sources(config)
    assert result["architecture"] == ARCH and set(result["paths"]) == set(entries)
    assert len([k for k in entries if k.startswith("soup-ViT-B-32-")]) == 72
    for key, role, spec in sources:
        if "head" in spec:
            assert result["paths"][key][role] is None
            continue
        if "url" in spec:
            paths = R.site_paths(spec, site)
            assert paths[0] == site.joinpath(*spec["url"][0].removeprefix("https://").split("/"))
        else:
            paths = [checkpoints.mirror_path(spec, mirror)]
        for p in paths:
            assert p.is_file() or (p / "config.json").is_file() and (p / "pytorch_model.bin").is_file(), (key, role, p)
        assert result["paths"][key][role] == str(paths[0])
    # the pinned OpenAI releases get the replicas' own sha256 for the overlay
    pinned = {k: {r: s["sha256"]} for k, r, s in sources if s.get("sha256")}
    assert set(result["sha256"]) == set(pinned) == {"openai-ViT-B-32", "openai-ViT-B-16", "openai-ViT-L-14"}
    for key, roles in result["sha256"].items():
        assert roles["checkpoint"] == checkpoints.digest(result["paths"][key]["checkpoint"])
        assert roles["checkpoint"] != pinned[key]["checkpoint"]
    folder = mirror / "gdrive" / "1NZ9kxXmsFWuY6oSAozTaaZwSISlZ_RgX"
    assert len(list(folder.iterdir())) >= 3  # the fine-tune and other files of the Model Stock folder

    # the fetch code takes them from the mirror; the converter reads them
    lock = tmp_path / "lock.json"
    spec = entries["tv-SVHN"]["sources"]
    fetched = tmp_path / "fetched"
    enc = checkpoints.fetch_checkpoint("tv-SVHN.encoder", spec["encoder"], fetched / "enc", lock, mirror=mirror)
    head = checkpoints.fetch_checkpoint("tv-SVHN.head", spec["head"], fetched / "head", lock, mirror=mirror)
    rec = convert.convert("pickled-modules", {"encoder": enc, "head": head}, ARCH, tmp_path / "tv-SVHN.safetensors")
    assert rec["num_classes"] == 10
    proj = checkpoints.fetch_checkpoint("fb.projection", entries["fb-svhn"]["sources"]["projection"],
                                        fetched / "proj", lock, mirror=mirror)
    assert (proj / "pytorch_model.bin").is_file()
    rec = convert.convert("model-soups", {"checkpoint": result["paths"]["ViT-L-14"]["checkpoint"]}, ARCH,
                          tmp_path / "l14.safetensors")
    assert rec["num_classes"] == 1000


def test_unknown_sources_are_refused(tmp_path):
    def paper(entry):
        return {"paper": {"checkpoints": {"x": entry}}}

    cases = [
        ({"format": "timm", "architecture": "a", "sources": {"checkpoint": {"url": ["https://h/x.pt"]}}}, "unknown"),
        ({"format": "model-soups", "architecture": "a", "sources": {"checkpoint": {"hf_repo": "o/n"}}}, "hf_repo"),
        ({"format": "openai-clip", "architecture": "a", "sources": {"checkpoint": {"s3": "b/k"}}}, "needs url"),
        ({"format": "hf-clip-vision", "architecture": "a", "sources": {"encoder": {"hf_repo": "o/n"}}}, "role"),
    ]
    for entry, match in cases:
        with pytest.raises(R.ReplicaError, match=match):
            R.write_checkpoint_replicas(paper(entry), tmp_path / "s", tmp_path / "m")
    with pytest.raises(R.ReplicaError, match="QuickGELU"):
        R.make_backbone("g", architecture="dawin-tiny-rn")


def test_task_vectors_pool_ranks_ties_over_the_whole_pickled_encoder(tmp_path, bb):
    """Issue 24 item 11. AdaMerging's TIES / AdaMerging++ flatten the whole state dict of task_vectors' pickled
    ImageEncoder (EnnengYang/AdaMerging@cea1165a src/main_ties_merging.py: remove_keys = [],
    state_dict_to_vector; topk_values_mask in src/ties_merging_utils.py), text-side tensors included
    (mlfoundations/task_vectors@826a64c6 src/modeling.py deletes only `transformer`). The converter records that
    count from the pickle, the pool ranks over it, and TIES equals AdaMerging's arithmetic on the flat vectors."""
    from dawin.merging import adamerging, ties
    from dawin.merging.multitask import load_pool

    info = task_info("svhn")
    head = R.task_vectors_head(bb, info.classnames, info.templates)
    save_file({"weight": head.weight.detach().clone()}, str(tmp_path / "head.safetensors"))
    encoders = {"zeroshot": R.task_vectors_encoder(bb, {}, finetuned=False)}
    for task in ("svhn", "mnist"):
        encoders[task] = R.task_vectors_encoder(bb, bb.finetuned_visual(f"task/{task}", "tv", direction_scale=0.1),
                                                finetuned=True)
    files = {}
    for name, enc in encoders.items():
        R.torch_save_module(enc, tmp_path / f"{name}.pt")
        files[name] = str(tmp_path / f"tv-{name}.safetensors")
        record = convert.convert("pickled-modules", {"encoder": tmp_path / f"{name}.pt",
                                                     "head": tmp_path / "head.safetensors"}, ARCH, files[name])
        upstream = enc.state_dict()  # what AdaMerging's torch.load(...).state_dict() holds
        assert int(record["source_encoder_entries"]) == sum(t.numel() for t in upstream.values())
        assert read_metadata(files[name])["source_encoder_entries"] == record["source_encoder_entries"]

    # the count: the image tower plus the text side task_vectors keeps (the architecture's own numbers)
    clip = open_clip.create_model(ARCH, pretrained=None)
    text_side = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias",
                 "text_projection", "logit_scale")
    visual = sum(t.numel() for k, t in clip.state_dict().items() if k.startswith("visual."))
    total = visual + sum(clip.state_dict()[k].numel() for k in text_side)
    pool = load_pool(files["zeroshot"], {"svhn": files["svhn"], "mnist": files["mnist"]})
    assert pool.trim_entries == total > visual

    # AdaMerging's TIES by direct arithmetic on the flattened upstream state dicts (sorted keys)
    keys = sorted(encoders["zeroshot"].state_dict())
    flat = {n: torch.cat([e.state_dict()[k].reshape(-1) for k in keys]) for n, e in encoders.items()}
    taus = torch.stack([flat[t] - flat["zeroshot"] for t in ("svhn", "mnist")])
    d = taus.shape[1]
    assert d == total
    kth = taus.abs().kthvalue(d - int(d * 0.2), dim=1, keepdim=True).values
    trimmed = taus * (taus.abs() >= kth)
    signs = torch.sign(trimmed.sum(0))
    selected = trimmed * torch.where(signs > 0, trimmed > 0, trimmed < 0)
    merged = flat["zeroshot"] + 0.3 * selected.sum(0)
    offsets, start = {}, 0
    for k in keys:
        offsets[k] = (start, start + encoders["zeroshot"].state_dict()[k].numel())
        start = offsets[k][1]
    ours = ties.merge(pool)
    for k, v in ours.items():
        a, b = offsets[f"model.visual.{k}"]
        assert torch.allclose(v.reshape(-1), merged[a:b], atol=1e-7), k
    # the text side's zeros are counted: more than 20 % of the image tower's entries are kept
    kept = sum(int((t != 0).sum()) for t in ties.trim_top_k(pool.task_vectors()["svhn"], 0.2, pool.trim_entries).values())
    assert kept == int((trimmed[0] != 0).sum()) > int(0.2 * visual) + 1
    # AdaMerging++'s task vectors are the same selected entries
    pp = adamerging.ties_task_vectors(pool.task_vectors(), total_entries=pool.trim_entries)
    for i, t in enumerate(("svhn", "mnist")):
        for k, v in pp[t].items():
            a, b = offsets[f"model.visual.{k}"]
            assert torch.allclose(v.reshape(-1), selected[i, a:b]), (t, k)
