"""One model of every backbone family through the extract stage, against an independent reference.

The reference is built here, without videolt's transforms: the ffmpeg CLI's 1-fps frames, the
model library's own transform (torchvision's weights transforms for the ResNets and TSM, timm's
`create_transform` of the model's data config for timm models) and the model in fp32, built
directly with torchvision or timm from the same seed (TSM: a torchvision ResNet-50 wrapped by hand,
tests/test_tsm.py). What must hold for each family, random weights, short generated videos:

- the input tensors videolt feeds the network agree with the reference's within 2 grey levels
  (the resampling filters differ slightly: torch's batched uint8 kernels against PIL's);
- the stored features agree within 2 % relative error;
- the feature set's attrs record exactly the preprocessing that was applied.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image
from timm.data import create_transform, resolve_data_config

from tests.lists import small_lists
from tests.test_tsm import hand_tsm_features
from tests.videos import make_video
from videolt.data.store import FeatureStore
from videolt.data.workdir import Workdir
from videolt.extract.backbones import create_backbone
from videolt.extract.config import ExtractConfig
from videolt.extract.decode_worker import DecodeJob, View, decode_job
from videolt.extract.transforms import Preprocessing
from videolt.pipeline.extract import run_extract

FRAMES = 3
VIDEO_SIZE = (320, 240)  # width, height: the short side is resampled down for every family
REPO = Path(__file__).resolve().parents[1]

# family → (backbone, run overrides). DINOv2 runs at 112 here: its own 518 costs ~20x more on a CPU.
# batch_size = FRAMES everywhere: the sink pads a short last batch to batch_size (static shapes).
FAMILIES = {
    "torchvision-resnet": ("resnet50", {}),
    "tsm": ("tsm_r50", {}),
    "timm-cnn": ("timm:resnet18", {}),
    "timm-vit": ("timm:vit_tiny_patch16_224", {}),
    "clip-vit": ("timm:vit_xsmall_patch16_clip_224.tinyclip_yfcc15m", {}),
    "dinov2-vit": ("timm:vit_small_patch14_dinov2", {"resize": 128, "crop": 112}),
}


def make_workdir(root: Path, n: int = 2) -> Workdir:
    wd = Workdir.init(root / "wd", small_lists(root / "lists", n_train=n, n_val=0, n_test=0))
    with wd.manifest() as m:
        for v in m.videos():
            path = wd.video_path(v.video_id, "mp4")
            path.parent.mkdir(parents=True, exist_ok=True)
            make_video(path, seconds=2.5 + v.index, size=VIDEO_SIZE, fps=10, pattern=f"class-{v.index + 2}")
            m.record("download", v.index, "done", info={"path": str(path.relative_to(wd.root))})
    return wd


def ffmpeg_frames(path: Path) -> np.ndarray:
    w, h = VIDEO_SIZE
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-an", "-vf", "fps=fps=1:round=up",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def reference(name: str, overrides: dict) -> tuple[Preprocessing, object, torch.nn.Module | None]:
    """(expected preprocessing, the library's transform, the fp32 model or None for TSM) built without videolt."""
    resize, crop = overrides.get("resize"), overrides.get("crop")
    if not name.startswith("timm:"):
        pre = Preprocessing(resize=resize or 256, crop=crop or 256, interpolation="bilinear")  # the paper's
        tf = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms(resize_size=pre.resize, crop_size=pre.crop)
        if name == "tsm_r50":
            return pre, tf, None
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)()
        model.fc = torch.nn.Identity()
        return pre, tf, model.eval()
    model_name = name.removeprefix("timm:")
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=0, **({"img_size": crop} if crop else {}))
    own = resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(model_name).to_dict())
    args = {"input_size": (3, crop, crop), "crop_pct": crop / (resize + 0.5)} if crop else {}
    data = resolve_data_config(args, pretrained_cfg=timm.models.get_pretrained_cfg(model_name).to_dict())
    tf = create_transform(**data, is_training=False)
    size = data["input_size"][1]
    pre = Preprocessing(resize=resize or math.floor(size / own["crop_pct"]), crop=size,
                        interpolation=data["interpolation"], mean=data["mean"], std=data["std"])
    return pre, tf, model.eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_family_matches_its_library_reference(family, tmp_path):
    name, overrides = FAMILIES[family]
    wd = make_workdir(tmp_path)
    cfg = ExtractConfig(backbones=(name,), weights="random", names=("f",), frames=FRAMES, batch_size=FRAMES,
                        workers=0, verify=1, **overrides)
    counts = run_extract(wd, cfg, progress=False)
    assert counts["done"] == 2 and counts["failed"] == {}
    assert counts["verify"]["checked"] == 1 and counts["verify"]["worst"] < 0.02  # the library's own check agrees

    store = FeatureStore.open(wd.features_path("f"))
    want_pre, tf, model = reference(name, overrides)
    recorded = Preprocessing.from_dict(store.attrs["preprocessing"])
    assert recorded == want_pre  # the attrs say what was applied ...
    assert store.attrs["preprocessing"]["fps"] == 1.0 and store.attrs["backbone"]["name"] == name
    if model is None:  # TSM: the hand-wrapped ResNet-50 with the library model's (random) weights
        state = create_backbone(name, weights="random", seed=0).model.state_dict()
        state |= {"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}  # the head it drops
    with wd.manifest() as m:
        for v in m.videos():
            path = wd.find_video(v.video_id)
            frames = ffmpeg_frames(path)
            picks = np.floor(np.linspace(0, len(frames) - 1, FRAMES)).astype(int)
            ref_x = torch.stack([tf(Image.fromarray(frames[k])) for k in picks])  # [T, 3, c, c] float32
            # ... and is what reached the network: videolt's decode + crop, then the recorded normalisation.
            decoded = decode_job(DecodeJob(v.index, v.video_id, str(path), (View.of(recorded),), frames=FRAMES))
            got_x = recorded.normalise()(torch.from_numpy(decoded.clips[0]))
            assert got_x.shape == ref_x.shape == (FRAMES, 3, recorded.crop, recorded.crop)
            grey = (got_x - ref_x).abs() * torch.tensor(recorded.std).view(1, 3, 1, 1) * 255
            assert grey.max() <= 2.0 + 1e-3, f"{family}: inputs differ by {grey.max():.2f} grey levels"
            with torch.no_grad():
                ref = hand_tsm_features(state, ref_x, [(0, FRAMES)]) if model is None else model(ref_x)
            got = torch.from_numpy(store.read_rows([v.index])[0].astype(np.float32))
            rel = float((got - ref).norm() / ref.norm())
            assert rel < 0.02, f"{family}: stored features differ by {rel:.2%}"


def test_two_backbones_of_different_sizes_decode_each_video_once(tmp_path, monkeypatch):
    """resnet50 (256/256 bilinear) and a ViT (248/224 bicubic) in one run: one decode per video, two crops."""
    from videolt.extract import decode_worker, stage

    wd = make_workdir(tmp_path, n=2)
    decoded: list[str] = []
    real = decode_worker.iter_frames
    monkeypatch.setattr(decode_worker, "iter_frames", lambda path, *a, **k: decoded.append(str(path)) or real(path, *a, **k))
    views: list[tuple] = []
    monkeypatch.setattr(stage, "decode_job", lambda job: views.append(job.views) or decode_worker.decode_job(job))
    cfg = ExtractConfig(backbones=("resnet50", "timm:vit_tiny_patch16_224"), weights="random", names=("r", "v"),
                        frames=FRAMES, batch_size=FRAMES, workers=0, verify=2)
    counts = run_extract(wd, cfg, progress=False)
    assert counts["done"] == 2 and counts["verify"]["checked"] == 4 and counts["verify"]["worst"] < 0.02
    with wd.manifest() as m:
        paths = sorted(str(wd.find_video(v.video_id)) for v in m.videos())
    assert sorted(decoded) == paths  # each video decoded exactly once, for both backbones
    assert views and all(v == (View(256, 256, "bilinear"), View(248, 224, "bicubic")) for v in views)
    r, v = (FeatureStore.open(wd.features_path(n)) for n in ("r", "v"))
    assert (r.dim, v.dim) == (2048, 192) and r.status().tolist() == v.status().tolist() == [1, 1]
    assert (r.attrs["preprocessing"]["crop"], v.attrs["preprocessing"]["crop"]) == (256, 224)


def test_local_dinov2_weights_at_224_style_override_match_timms_own_loader(tmp_path):
    """A DINOv2 file saved at its native 518 loads at another size with position embeddings resampled,
    exactly as timm's own pretrained loader does it; the file's sha256 is the provenance."""
    from safetensors.torch import save_file

    torch.manual_seed(4)
    native = timm.create_model("vit_small_patch14_dinov2", pretrained=False)
    for p in native.parameters():  # away from the init, so a wrong mapping would show
        p.data.add_(torch.randn_like(p) * 0.02)
    path = tmp_path / "dinov2_s14.safetensors"
    save_file({k: v.contiguous() for k, v in native.state_dict().items()}, path)
    bb = create_backbone("timm:vit_small_patch14_dinov2", weights=str(path), resize=128, crop=112)
    want = timm.create_model("vit_small_patch14_dinov2", pretrained=True, num_classes=0, img_size=112,
                             pretrained_cfg_overlay={"file": str(path)}).eval()
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(bb(x), want(x), rtol=1e-5, atol=1e-5)
    assert bb.cfg.dim == 384 and (bb.preprocessing.resize, bb.preprocessing.crop) == (128, 112)
    import hashlib

    assert bb.cfg.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def _readme_backbones() -> list[tuple[str, int, str, str]]:
    """(name, feature size, input, flags) rows of the README's tested-backbones table."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("<!-- backbones -->"):text.index("<!-- /backbones -->")]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`"):
            flags = re.findall(r"`(--[^`]*)`", cells[3])
            rows.append((cells[0].strip("`"), int(cells[1]), cells[2], flags[0] if flags else ""))
    return rows


@pytest.mark.parametrize("row", _readme_backbones(), ids=lambda r: f"{r[0]}{r[3]}".replace(" ", ""))
def test_readme_backbone_table_is_true(row):
    """Each listed name builds, gives the listed feature size and takes the listed input (on the meta
    device: no weights are initialised, so even ViT-B at 518 costs nothing)."""
    name, dim, size, flags = row
    opts = dict(re.findall(r"--(resize|crop) (\d+)", flags))
    with torch.device("meta"):
        bb = create_backbone(name, weights="random", **{k: int(v) for k, v in opts.items()})
        out = bb(torch.zeros(1, 3, bb.preprocessing.crop, bb.preprocessing.crop))
    assert bb.cfg.dim == dim and out.shape == (1, dim)
    resize, crop = (int(s) for s in re.findall(r"\d+", size)[:2])
    assert (bb.preprocessing.resize, bb.preprocessing.crop) == (resize, crop), size
