"""CompressAI's own tools, unchanged, on a codec of every rate strategy.

Each codec is composed the way ``codec build --rate NAME`` composes it (the rate's default
components, small sizes), trained for a few steps so that its parameters and tables are not
the initial ones.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from compressai.losses import RateDistortionLoss
from compressai.models import FactorizedPrior
from compressai.ops import compute_padding
from compressai.optimizers import net_aux_optimizer
from compressai.utils.eval_model.__main__ import inference, inference_entropy_estimation

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.evaluation import evaluate
from codec_lab.corelib.images import load_image
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec
from codec_lab.registry.compressai_zoo import from_factorized_prior, register_run, unregister
from tests.contract.checks import SMALL_PARAMS
from tests.helpers import image_tensor

RATES = [i.name for i in Registry().infos() if i.kind == "rate"]
SAMPLES = Path(__file__).resolve().parents[2] / "corelib" / "samples" / "train"


def _config(rate: str, registry: Registry) -> dict:
    info = registry.get("rate", rate)
    chosen = {**info.cls.default_components, "rate": rate}
    sets = {"model": {kind: dict(p) for (kind, name), p in SMALL_PARAMS.items()
                      if chosen.get(kind) == name}}  # fmt: skip
    return assemble_config(registry, rate=rate, sets=sets)


def _trained(rate: str, registry: Registry, steps: int = 4) -> Codec:
    """A small codec after a few optimizer steps (CompressAI's loop: net, then aux)."""
    torch.manual_seed(0)
    codec = build_codec(_config(rate, registry)["model"], registry)
    net = [p for n, p in codec.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in codec.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(net, lr=1e-3)
    aux_opt = torch.optim.Adam(aux, lr=1e-2) if aux else None
    crit = RateDistortionLoss(lmbda=0.01)
    x = image_tensor(64, 64, seed=1)
    codec.train()
    for _ in range(steps):
        out = codec(x)
        loss = crit(out, x)["loss"] + out["rate_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if aux_opt is not None:
            aux_opt.zero_grad()
            codec.aux_loss().backward()
            aux_opt.step()
    codec.update(force=True)
    return codec.eval()


@pytest.fixture(scope="module", params=RATES)
def codec(request: pytest.FixtureRequest) -> Codec:
    return _trained(request.param, Registry())


def test_rate_distortion_loss(codec: Codec) -> None:
    """CompressAI's RateDistortionLoss reads our x_hat and likelihoods and trains the codec."""
    codec.train()
    try:
        x = image_tensor(64, 64, seed=2)
        out = codec(x)
        res = RateDistortionLoss(lmbda=0.01)(out, x)
        assert set(res) >= {"loss", "bpp_loss", "mse_loss"}
        assert math.isfinite(float(res["loss"].detach())) and float(res["bpp_loss"].detach()) > 0
        res["loss"].backward()
        grads = [p.grad for p in codec.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    finally:
        codec.zero_grad(set_to_none=True)
        codec.eval()


def test_eval_model_inference(codec: Codec) -> None:
    """``eval_model``'s real-coding path: pads to 64, compress, decompress, crops."""
    h, w = 168, 176  # its MS-SSIM needs more than 160 px
    x = image_tensor(h, w, seed=3)[0]
    res = inference(codec, x)
    pad, _ = compute_padding(h, w, min_div=64)
    enc = codec.compress(torch.nn.functional.pad(x[None], pad, mode="constant", value=0))
    assert res["bpp"] == pytest.approx(sum(len(s[0]) for s in enc["strings"]) * 8 / (h * w))
    assert res["psnr-rgb"] > 5 and 0 < res["ms-ssim-rgb"] <= 1


def test_eval_model_entropy_estimation(codec: Codec) -> None:
    """``--entropy-estimation`` calls forward on the unpadded image: any size works."""
    x = image_tensor(170, 173, seed=4)[0]
    res = inference_entropy_estimation(codec, x)
    with torch.no_grad():
        out = codec(x[None])
    assert out["x_hat"].shape == x[None].shape
    bits = sum(float(-torch.log2(lk).sum()) for lk in out["likelihoods"].values())
    assert res["bpp"] == pytest.approx(bits / (170 * 173), rel=1e-4)
    assert res["psnr-rgb"] > 5


def test_net_aux_optimizer_split(codec: Codec) -> None:
    """The split covers every parameter once; the aux set is exactly the bottleneck quantiles.

    CompressAI's models all have a bottleneck; a codec without one (admm, importance) has an
    empty aux set, which torch refuses to build an optimizer on, so only the net optimizer
    is built for those.
    """
    conf = {"net": {"type": "Adam", "lr": 1e-4}, "aux": {"type": "Adam", "lr": 1e-3}}
    quantiles = [n for n, _ in codec.named_parameters() if n.endswith(".quantiles")]
    if quantiles:
        opts = net_aux_optimizer(codec, conf)
        aux = {id(p) for g in opts["aux"].param_groups for p in g["params"]}
        net = {id(p) for g in opts["net"].param_groups for p in g["params"]}
        assert aux == {id(p) for n, p in codec.named_parameters() if n in quantiles}
        assert aux.isdisjoint(net) and len(aux | net) == len(list(codec.parameters()))
    else:
        with pytest.raises(ValueError, match="empty parameter list"):
            net_aux_optimizer(codec, conf)
    # The aux loss is a tensor whose backward() runs either way (CompressAI's train loop).
    loss = codec.aux_loss()
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0
    loss.backward()
    codec.zero_grad(set_to_none=True)


def test_update_force(codec: Codec) -> None:
    has_bottleneck = any(n.endswith(".quantiles") for n, _ in codec.named_parameters())
    x = image_tensor(48, 64, seed=5)
    before = codec.compress(x)["strings"]
    assert codec.update(force=True) is has_bottleneck
    assert codec.update() is False  # nothing stale: nothing recomputed
    assert codec.compress(x)["strings"] == before


def test_state_dict_round_trip(codec: Codec, registry: Registry) -> None:
    """A fresh codec (empty tables) loads the state dict, resizing CompressAI's buffers."""
    torch.manual_seed(99)
    fresh = build_codec(codec.config, registry).eval()
    fresh.load_state_dict(codec.state_dict())
    assert fresh.weights_digest() == codec.weights_digest()
    x = image_tensor(48, 64, seed=6)
    enc = codec.compress(x)
    assert fresh.compress(x)["strings"] == enc["strings"]
    assert torch.equal(fresh.decompress(**enc)["x_hat"], codec.decompress(**enc)["x_hat"])


def test_plot_reads_our_json(codec: Codec, tmp_path: Path) -> None:
    """``python -m compressai.utils.plot`` draws our eval JSON."""
    pytest.importorskip("matplotlib")
    from compressai.utils.plot.__main__ import main as plot_main

    ev = evaluate(codec, sorted(SAMPLES.glob("*.png"))[:1])
    path = tmp_path / "ours.json"
    path.write_text(json.dumps(ev.to_compressai("ours", "codec-lab")))
    png = tmp_path / "rd.png"
    import matplotlib

    matplotlib.use("Agg")
    plot_main(["-f", str(path), "-o", str(png), "-m", "psnr"])
    plot_main(["-f", str(path), "-o", str(tmp_path / "ms.png"), "-m", "ms-ssim"])
    assert png.stat().st_size > 1000


# ---------------------------------------------------------------- FactorizedPrior equivalence
def _real_image() -> torch.Tensor:
    """A real photo whose sides are multiples of 16 (Kodak when $CODEC_DATA has it)."""
    kodak = Path(os.environ.get("CODEC_DATA", "../shared/data")) / "kodak" / "kodim05.png"
    x = load_image(kodak if kodak.is_file() else sorted(SAMPLES.glob("*.png"))[0])[0]
    h, w = (s // 16 * 16 for s in x.shape[-2:])
    return x[..., :h, :w]


def _factorized_pair() -> tuple[FactorizedPrior, Codec]:
    torch.manual_seed(0)
    ref = FactorizedPrior(32, 48)
    with torch.no_grad():  # a density that is not the initial one
        for p in ref.entropy_bottleneck.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ref.update(force=True)
    ours = from_factorized_prior(ref.state_dict())
    return ref.eval(), ours.eval()


def test_byte_identical_to_compressai_factorized_prior() -> None:
    """Same weights → the same bytes and the same reconstruction as CompressAI's model."""
    ref, ours = _factorized_pair()
    x = _real_image()
    with torch.no_grad():
        a, b = ours.compress(x), ref.compress(x)
        assert len(b["strings"][0][0]) > 100
        assert a["strings"] == b["strings"]
        assert tuple(a["shape"]) == tuple(b["shape"])
        assert torch.equal(ours.decompress(**a)["x_hat"], ref.decompress(b["strings"], b["shape"])["x_hat"])
        fo, fr = ours(x), ref(x)
    assert torch.equal(fo["x_hat"], fr["x_hat"])
    assert torch.equal(fo["likelihoods"]["y"], fr["likelihoods"]["y"])


def test_our_weights_load_into_factorized_prior() -> None:
    """The other way: our codec's state dict, renamed, is a FactorizedPrior checkpoint."""
    ref, ours = _factorized_pair()
    back = {}
    for key, value in ours.state_dict().items():
        for mine, theirs in (("encoder.", ""), ("decoder.", ""), ("rate.bottleneck.", "entropy_bottleneck.")):
            if key.startswith(mine):
                back[theirs + key[len(mine):]] = value
    again = FactorizedPrior.from_state_dict(back).eval()
    x = _real_image()[..., :128, :128]
    assert again.compress(x)["strings"] == ours.compress(x)["strings"]


def _fitted_density_codec(x: torch.Tensor) -> Codec:
    """A gdn codec whose density is fitted (rate loss + aux loss) to this image's latent.

    Channels are scaled from nearly constant to wide, like a trained model's latent, so the
    check covers the low-entropy channels where table quantization costs the most.
    """
    torch.manual_seed(0)
    codec = build_codec(_config("entropy", Registry())["model"] | {
        "encoder": {"name": "gdn", "channels": 32, "latent_channels": 48},
        "decoder": {"name": "gdn", "channels": 32, "latent_channels": 48}})  # fmt: skip
    with torch.no_grad():
        y = codec.encoder(x)["y"]
        scale = torch.logspace(-1.3, 0.7, y.shape[1]).view(1, -1, 1, 1)
        y = (y / y.std(dim=(0, 2, 3), keepdim=True)) * scale * 2
    eb = codec.rate.bottleneck
    opt = torch.optim.Adam([p for n, p in eb.named_parameters() if n != "quantiles"], lr=1e-2)
    aux = torch.optim.Adam([eb.quantiles], lr=5e-2)
    for _ in range(300):
        _, lk = eb(y, training=True)
        loss = -torch.log2(lk).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        aux.zero_grad()
        eb.loss().backward()
        aux.step()
    # Put the scaled latent in the encoder's last layer so compress() codes exactly y.
    with torch.no_grad():
        last = codec.encoder.g_a[-1]
        factor = (scale * 2 / codec.encoder(x)["y"].std(dim=(0, 2, 3), keepdim=True)).view(-1)
        last.weight.mul_(factor.view(-1, 1, 1, 1))
        last.bias.mul_(factor)
    codec.update(force=True, update_quantiles=True)  # as the training engine finishes
    return codec.eval()


def test_factorized_real_bpp_within_one_percent_of_estimate() -> None:
    """On a Kodak-sized image, the coded payload is within 1% of the likelihood estimate."""
    x = _real_image()
    if x.shape[-1] * x.shape[-2] < 512 * 768:
        pytest.skip("needs a Kodak-sized image: set CODEC_DATA to the shared data folder")
    codec = _fitted_density_codec(x)
    with torch.no_grad():
        est_bits = float(-torch.log2(codec(x)["likelihoods"]["y"].double()).sum())
    real_bits = 8 * sum(len(s[0]) for s in codec.compress(x)["strings"])
    pixels = x.shape[-2] * x.shape[-1]
    assert 0.05 < est_bits / pixels < 4
    assert abs(real_bits - est_bits) <= 0.01 * est_bits, (real_bits / pixels, est_bits / pixels)


# ---------------------------------------------------------------- CompressAI's registries
def test_registered_run_is_built_by_compressai(trained_run: Path, tmp_path: Path) -> None:
    """After register_run, CompressAI's registries and eval_model's loader build our codec."""
    import compressai.registry
    import compressai.zoo
    from compressai.utils.eval_model.__main__ import load_checkpoint

    from codec_lab.registry.runs import load_run

    name = register_run(trained_run, "test-registered")
    try:
        ours = load_run(trained_run)
        assert compressai.registry.MODELS[name]().weights_digest() != ours.weights_digest()
        pre = compressai.zoo.image_models[name](quality=1, pretrained=True)
        assert pre.weights_digest() == ours.weights_digest()
        ckpt = tmp_path / "c.pth.tar"
        torch.save({"state_dict": ours.state_dict()}, ckpt)
        net = load_checkpoint(name, False, str(ckpt))
        assert net.weights_digest() == ours.weights_digest()
        x = image_tensor(40, 48)
        assert net.compress(x)["strings"] == ours.compress(x)["strings"]
    finally:
        unregister(name)
    assert name not in compressai.zoo.image_models


def test_codec_compressai_runs_eval_model(trained_run: Path, tmp_path: Path) -> None:
    """``codec compressai RUN -- -m compressai.utils.eval_model …`` evaluates our codec."""
    data = tmp_path / "imgs"
    data.mkdir()
    (data / "a.png").write_bytes((SAMPLES / sorted(p.name for p in SAMPLES.glob("*.png"))[0]).read_bytes())
    ckpt = tmp_path / "run.pth.tar"
    proc = subprocess.run(
        [sys.executable, "-m", "codec_lab.cli.app", "compressai", str(trained_run), "--name", "my-run",
         "--export", str(ckpt), "--", "-m", "compressai.utils.eval_model", "checkpoint",
         str(data), "-a", "my-run", "-p", str(ckpt)],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert res["name"] == "my-run-mse" and res["results"]["bpp"][0] > 0


def test_update_model_rewrites_a_checkpoint_of_a_registered_run(trained_run: Path, tmp_path: Path) -> None:
    """``compressai.utils.update_model`` (imported before the registration) takes our codec."""
    from compressai.utils.update_model.__main__ import main as update_main

    from codec_lab.registry.runs import load_run

    ours = load_run(trained_run)
    ckpt = tmp_path / "ours.pth.tar"
    torch.save({"state_dict": ours.state_dict()}, ckpt)
    name = register_run(trained_run, "test-update-model")
    try:
        update_main(["--architecture", name, str(ckpt), "-d", str(tmp_path / "out"), "-n", "upd"])
    finally:
        unregister(name)
    (written,) = (tmp_path / "out").glob("upd-*.pth.tar")
    fresh = load_run(trained_run)
    fresh.load_state_dict(torch.load(written, map_location="cpu", weights_only=True))
    assert fresh.weights_digest() == ours.weights_digest()


# ---------------------------------------------------------------- checkpoints of another config
@pytest.fixture(scope="module")
def keep_run(tmp_path_factory: pytest.TempPathFactory, data_dirs) -> Path:
    """A run of the tiny composition with another ADMM keep ratio: same shapes, other config."""
    from codec_lab.registry.runs import train_run
    from tests.conftest import tiny_config

    reg = Registry()
    cfg = tiny_config(reg, {"train": str(data_dirs["train"]), "val": str(data_dirs["val"])})
    cfg["model"]["rate"]["keep"] = 0.2
    out = tmp_path_factory.mktemp("keep") / "keep-run"
    train_run(cfg, out, reg)
    return out


def test_a_checkpoint_of_another_config_is_refused(trained_run: Path, keep_run: Path, other_run: Path,
                                                  tmp_path: Path) -> None:  # fmt: skip
    """Loaded under another run's registration, weights of a different configuration would be
    evaluated with the wrong settings (it happened: 0.0790 bpp instead of 0.1323)."""
    import compressai.zoo.image

    from codec_lab.corelib.errors import ConfigMismatchError
    from codec_lab.registry.runs import load_run

    name = register_run(trained_run, "test-digest")
    try:
        arch = compressai.zoo.image.model_architectures[name]
        with pytest.raises(ConfigMismatchError, match="another configuration"):
            arch.from_state_dict(load_run(keep_run).state_dict())
        # the same configuration loads, whatever the weights (another seed)
        net = arch.from_state_dict(load_run(other_run).state_dict())
        assert net.weights_digest() == load_run(other_run).weights_digest()
        # checkpoints written before the digest existed still load
        old = {k: v for k, v in load_run(trained_run).state_dict().items() if k != "config_digest"}
        assert arch.from_state_dict(old).weights_digest() == load_run(trained_run).weights_digest()
    finally:
        unregister(name)


def test_eval_model_refuses_a_checkpoint_of_another_run(trained_run: Path, keep_run: Path,
                                                       tmp_path: Path) -> None:  # fmt: skip
    data = tmp_path / "imgs"
    data.mkdir()
    (data / "a.png").write_bytes(sorted(SAMPLES.glob("*.png"))[0].read_bytes())
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "codec_lab.cli.app", "compressai", str(keep_run), "--export",
                           str(tmp_path / "b.pth.tar")], capture_output=True, text=True, timeout=300,
                          cwd=root)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "codec_lab.cli.app", "compressai", str(trained_run), "--name", "run-a",
         "--export", str(tmp_path / "a.pth.tar"), "--", "-m", "compressai.utils.eval_model",
         "checkpoint", str(data), "-a", "run-a", "-p", str(tmp_path / "a.pth.tar"),
         str(tmp_path / "b.pth.tar")],
        capture_output=True, text=True, timeout=300, cwd=root,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "saved from a codec with another configuration" in proc.stderr, proc.stderr[-2000:]
