"""`stylelab report`: the seed's §3 end to end (offline, random weights, tiny images, one iteration), resuming,
the page in headless Chromium, the verdict sentences on hand-made measurements, and one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import make_rgb, make_stripes
from stylelab.cli import main
from stylelab.study.evaluate import Judges
from stylelab.study.report import (
    NO_VERDICT_RANDOM, RN50_STYLE_SETS, SEED_TIMES, Evidence, Study, _baselines, evidence as report_evidence,
    experiments, picture_kept, judge_verdict, verdict_backbones,
    verdict_deep_content_layers, verdict_deep_style_layers, verdict_features_extreme, verdict_features_similar,
    verdict_style_sweep_similar, verdict_swag, verdict_token_gram, verdict_vit_channel_gram,
)

SEED_FIGURES = [f"fig3_{i}" for i in range(1, 12)]
REMEDIES = ["vit_channel_gram", "rn50_swag"]
TINY = ["--weights", "random", "--size", "48", "--iterations", "1", "--device", "cpu"]


class Page(HTMLParser):
    """Sections (id -> their text), images, the verdict paragraphs, scripts and outside references of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: dict[str, str] = {}
        self.images: list[str] = []
        self.verdicts: dict[str, str] = {}
        self.banner = ""
        self.scripts = 0
        self.references: list[str] = []
        self._section = None
        self._verdict = False
        self._banner = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.references += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if tag == "section":
            self._section = attrs.get("id")
            self.sections[self._section] = ""
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "script":
            self.scripts += 1
        if tag == "p" and "verdict" in attrs.get("class", "").split():
            self._verdict = True
            self.verdicts[self._section] = ""
        if tag == "div" and "banner" in attrs.get("class", ""):
            self._banner = True

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        if tag == "p":
            self._verdict = False
        if tag == "div":
            self._banner = False

    def handle_data(self, data):
        if self._section is not None:
            self.sections[self._section] += data
        if self._verdict:
            self.verdicts[self._section] += data
        if self._banner:
            self.banner += data


@contextlib.contextmanager
def offline_here(tmp: Path):
    """conftest's offline guard, for a fixture shared by the module (function fixtures come after it)."""
    real_connect = socket.socket.connect

    def connect(sock, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"a test tried to open a network connection to {address}")
        return real_connect(sock, address, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", connect)
        mp.setenv("STYLELAB_OFFLINE", "1")
        mp.setenv("TORCH_HOME", str(tmp / "torch_home"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One full report at 48 px, one iteration, random weights; the judges are unavailable offline."""
    tmp = tmp_path_factory.mktemp("report")
    content, style = tmp / "content.png", tmp / "style.png"
    make_rgb(48, 64).save(content)
    make_stripes(64, 64).save(style)
    out = tmp / "out"
    argv = ["report", str(content), str(style), "-o", str(out), *TINY]
    with offline_here(tmp):
        code, err = run_cli(argv)
    assert code == 0, err
    return {"out": out, "argv": argv, "err": err, "tmp": tmp, "content": content, "style": style}


def test_full_report_has_every_figure_a_banner_no_quality_verdict_and_the_timings(report):
    out, err = report["out"], report["err"]
    page = Page((out / "index.html").read_text(encoding="utf-8"))
    data = json.loads((out / "report.json").read_text())
    # one section per figure of the seed, in its order, then the two remedies, then timings and environment
    assert [s for s in page.sections if s.startswith("fig")] == SEED_FIGURES
    assert list(page.sections)[-4:] == [*REMEDIES, "timings", "environment"]
    for i, fig in enumerate(SEED_FIGURES, 1):
        assert f"Fig 3.{i} —" in page.sections[fig]
    assert "Layer 1 bottleneck 0" in page.sections["fig3_1"]  # the seed's caption
    assert "does not achieve style transfer" in page.sections["fig3_5"]  # the seed's claim
    assert "relu1, relu2, relu3, layer1.0, layer1.1" in page.sections["fig3_4"]  # the layers used
    assert "--style-loss token-gram" in page.sections["fig3_5"]  # how to run it alone
    # random weights: the banner, and no verdict on quality anywhere
    assert "Random weights" in page.banner and "no verdict on quality" in page.banner
    assert set(page.verdicts) == {*SEED_FIGURES, *REMEDIES}
    for section, verdict in page.verdicts.items():
        assert NO_VERDICT_RANDOM in verdict, section
        assert not re.search(r"agrees with|disagrees|remedy helps|transfers (more|less|the most)", verdict), section
    assert all(s["status"] == "none" for s in data["sections"])
    # every figure is a file next to index.html
    assert len(page.images) == 14  # 13 sections, Fig 3.2 with its loss curves as well
    for src in page.images:
        assert not src.startswith(("/", "http")) and (out / src).is_file(), src
    # the timings: the seed's numbers and devices beside ours, measured here
    timings = page.sections["timings"]
    for words, _, device in SEED_TIMES.values():
        assert words in timings and device in timings
    fig3_2 = json.loads((out / "fig3_2" / "results.json").read_text())["runs"]
    vgg = next(r for r in fig3_2 if r["backbone"] == "vgg19")
    assert f"{vgg['seconds']:.4g}" in timings and "cpu" in timings
    assert [t["key"] for t in data["timings"]][:3] == ["vgg19", "clip-rn50-sequential", "clip-rn50"]
    assert "180× faster than VGG19, here" in data["speed"]
    env = page.sections["environment"]
    assert "torch" in env and "random init" in env
    # progress: the experiments counted, an estimate once runs have been timed
    assert all(f"experiment {k} of 13:" in err for k in range(1, 14))
    assert re.search(r"(less than a minute|about \d+ min) left \(\d+ run\(s\) to do\)", err)
    assert "random weights: the report shows timings and pictures, no verdict on quality" in err


def stamps(out: Path) -> dict[str, int]:
    kept = [*out.glob("*/runs/*"), *out.glob("*/features.*")]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in kept}


def test_a_second_run_redoes_nothing(report):
    out = report["out"]
    before = stamps(out)
    runs = len(list(out.glob("*/runs/*.png")))
    assert runs == 21 and len(before) == 2 * runs + 2 * 6
    with offline_here(report["tmp"]):
        code, err = run_cli(report["argv"])
    assert code == 0, err
    assert stamps(out) == before  # no run and no feature map was redone
    assert err.count("finished earlier, kept") == runs + 6
    assert "21 runs (0 to do)" in err and "left (" not in err
    assert (out / "index.html").is_file()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def test_the_page_loads_in_chromium_and_every_image_resolves(report, browser):
    from selenium.webdriver.common.by import By

    index = report["out"] / "index.html"
    page = Page(index.read_text(encoding="utf-8"))
    assert page.scripts == 0
    assert all(not re.match(r"[a-z]+:", ref) or ref.startswith("#") for ref in page.references)  # relative only
    browser.get(index.as_uri())
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == len(page.images) > 0
    for image in images:
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0, \
            image.get_attribute("src")
    # nothing from the network: every picture comes from the report's folder, nothing else is loaded
    sources = browser.execute_script("return Array.from(document.images, i => i.currentSrc)")
    assert all(src.startswith(index.parent.as_uri() + "/") for src in sources), sources
    assert browser.execute_script("return document.querySelectorAll('script, link, iframe, object, embed, "
                                  "video, audio, source').length") == 0
    assert browser.find_element(By.ID, "random-weights").is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, "#fig3_4 .verdict").text.endswith(NO_VERDICT_RANDOM)


# -- the verdicts on hand-made measurements ---------------------------------------------------------------


def run(id: str, backbone: str, style: str, gram: float | None, ssim: float = 0.5, content: str = "layer1.0",
        style_layers: str = "relu1,relu2") -> dict:
    return {"id": id, "backbone": backbone, "style": style, "options": {"backbone": backbone},
            "content_layers": {content: 1.0}, "style_layers": dict.fromkeys(style_layers.split(","), 1.0),
            "metrics": {"gram_style": gram, "ssim_content": ssim}}


def features(backbone: str, layer: str, kept: float) -> dict:
    return {"features": {"backbone": backbone, "layer": layer, "kept": kept}}


SETS = list(RN50_STYLE_SETS)  # the seed's five style-layer sets (Figs 3.1, 3.3)


def hand_made(style_grams=(1.0, 1.1, 0.95, 2.0, 2.2), ssims=None, backbones=None, token=1.9, channel=0.6,
              swag=0.4, kept=None) -> dict:
    ssims = ssims or {"layer1.0": 0.7, "relu1": 0.9, "relu3": 0.8, "layer2.0": 0.5, "layer3.0": 0.3}
    backbones = backbones or {"vgg19": 0.2, "clip-rn50-sequential": 0.9, "clip-rn50": 0.5}
    kept = kept or {"fig3_6": 0.40, "fig3_7": 0.36, "fig3_8": 0.10, "fig3_9": 0.30, "fig3_10": 0.55, "fig3_11": 0.28}
    layers = {"fig3_6": ("vgg19", "relu4_2"), "fig3_7": ("clip-rn50", "layer1.1"),
              "fig3_8": ("clip-rn50-sequential", "layer1.1"), "fig3_9": ("vgg19", "relu3_1"),
              "fig3_10": ("clip-rn50", "layer1.1"), "fig3_11": ("clip-rn50-sequential", "layer1.1")}
    sweep = [run(f"c0-s{j}", "clip-rn50", "a.png", g, style_layers=SETS[j]) for j, g in enumerate(style_grams)]
    return {
        "fig3_1": {"records": [{**r, "backbone": "clip-rn50-sequential"} for r in sweep]},
        "fig3_2": {"records": [run(f"s0-{b}", b, "a.png", g, ssim=0.6) for b, g in backbones.items()]},
        "fig3_3": {"records": sweep},
        "fig3_4": {"records": [run(f"c{i}-s0", "clip-rn50", "a.png", 1.0, ssim=s, content=layer)
                               for i, (layer, s) in enumerate(ssims.items())]},
        "fig3_5": {"records": [run("c0-s0", "clip-vit-b16", "a.png", token)]},
        **{fig: features(*layers[fig], k) for fig, k in kept.items()},
        "vit_channel_gram": {"records": [run("channel-gram", "clip-vit-b16", "a.png", channel)]},
        "rn50_swag": {"records": [run("s0-a-swag", "clip-rn50", "a.png", swag, ssim=0.55)]},
    }


def evidence(results, **kwargs) -> Evidence:
    return Evidence(results, **{"baselines": {"a.png": 2.0}, "judge": "vgg19 (pretrained)", **kwargs})


def test_verdicts_agree_with_the_seed_where_the_measurements_do():
    results = hand_made()
    ev = evidence(results)
    v = verdict_backbones(results, ev)
    assert v.status == "agrees"
    assert v.text.startswith("VGG19 transfers the most style (mean judge Gram distance over 1 style(s): vgg19 0.2, "
                             "clip-rn50-sequential 0.9, clip-rn50 0.5); the hooked RN50 transfers more style than the "
                             "sequential one: 0.5 vs 0.9")
    assert "the judge is VGG19" in v.text
    v = verdict_deep_content_layers(results, ev)
    assert v.status == "agrees"
    assert v.text.startswith("deep content layers lose content: SSIM to the content falls from 0.9 (relu1) to 0.3 "
                             "(layer3.0); all: relu1 0.9, relu3 0.8, layer1.0 0.7, layer2.0 0.5, layer3.0 0.3")
    v = verdict_deep_style_layers(results, ev)
    assert v.status == "agrees" and v.text == (
        "deep style layers transfer less style: mean judge Gram distance 2.1 with layer3/layer4 among the style "
        "layers (sets 4, 5) vs 1.02 without (sets 1, 2, 3)")
    v = verdict_style_sweep_similar(results, ev)  # 0.95 … 2.2: not similar
    assert v.status == "disagrees" and "from 0.95 (set 3) to 2.2 (set 5), 57% apart" in v.text
    v = verdict_token_gram(results, ev)
    assert v.status == "agrees" and v.text == (
        "the token Gram transfers little or no style: judge Gram distance 1.9, the unchanged content's 2 (5% closer "
        "to the style); VGG19 reaches 0.2 (Fig 3.2)")
    v = verdict_features_similar(results, ev, "fig3_6", "fig3_7", "content")
    assert v.status == "agrees" and v.text == (
        "vgg19 relu4_2 and clip-rn50 layer1.1 keep the content picture alike: mean |r| with the image 0.4 (vgg19 "
        "relu4_2) vs 0.36 (clip-rn50 layer1.1)")
    v = verdict_features_extreme(results, ev, "fig3_8", ("fig3_7", "fig3_6"), "content", least=True)
    assert v.status == "agrees" and v.text.startswith("clip-rn50-sequential layer1.1 keeps the least of the content "
                                                      "picture: mean |r| with the image 0.1 vs 0.36")
    v = verdict_vit_channel_gram(results, ev)
    assert v.status == "helps" and v.text.startswith(
        "the channel Gram transfers more style than the seed's token Gram: judge Gram distance 0.6 with the channel "
        "Gram vs 1.9 with the token Gram (Fig 3.5); the unchanged content: 2 (70% closer to the style)")
    v = verdict_swag(results, ev)
    assert v.status == "helps" and v.text == (
        "SWAG's softmax makes the hooked RN50 transfer more style: mean judge Gram distance 0.4 with SWAG vs 0.5 "
        "without (Fig 3.2) over 1 style(s); SSIM to the content 0.55 vs 0.6")
    # every experiment of the table reaches a verdict on these measurements
    assert all(judge_verdict(e, ev).status != "none" for e in experiments())


def test_verdicts_disagree_where_the_measurements_do_and_abstain_without_them():
    results = hand_made(style_grams=(1.0, 1.1, 0.95, 0.98, 1.02), token=0.8, channel=1.2, swag=0.7,
                        ssims={"layer1.0": 0.7, "relu1": 0.9, "relu3": 0.4, "layer2.0": 0.5, "layer3.0": 0.6},
                        backbones={"vgg19": 0.7, "clip-rn50-sequential": 0.5, "clip-rn50": 0.6},
                        kept={"fig3_6": 0.4, "fig3_7": 0.1, "fig3_8": 0.3, "fig3_9": 0.3, "fig3_10": 0.2,
                              "fig3_11": 0.6})
    ev = evidence(results)
    v = verdict_backbones(results, ev)
    assert v.status == "disagrees" and v.text.startswith("clip-rn50-sequential transfers more style than VGG19")
    assert "the hooked RN50 transfers no more style than the sequential one: 0.6 vs 0.5" in v.text
    v = verdict_deep_content_layers(results, ev)
    assert v.status == "disagrees" and "SSIM 0.6 at layer3.0, lowest 0.4 at relu3" in v.text
    assert verdict_deep_style_layers(results, ev).status == "disagrees"
    v = verdict_style_sweep_similar(results, ev)
    assert v.status == "agrees" and "from 0.95 (set 3) to 1.1 (set 2), within 25% of each other" in v.text
    v = verdict_token_gram(results, ev)
    assert v.status == "disagrees" and "does transfer style here" in v.text and "(60% closer" in v.text
    assert verdict_features_similar(results, ev, "fig3_6", "fig3_7", "content").text.startswith(
        "vgg19 relu4_2 keeps more of the content picture than clip-rn50 layer1.1")
    assert verdict_features_extreme(results, ev, "fig3_10", ("fig3_9", "fig3_11"), "style", least=False).status \
        == "disagrees"
    assert verdict_vit_channel_gram(results, ev).status == "does not help"
    assert verdict_swag(results, ev).status == "does not help"
    # without weights or without a judge: no verdict, and the reason
    by_id = {e.id: e for e in experiments()}
    assert judge_verdict(by_id["fig3_2"], evidence(results, random_weights=True)).text == NO_VERDICT_RANDOM
    v = judge_verdict(by_id["fig3_2"], evidence(results, judge_problem="the judge has random weights"))
    assert v.status == "none" and v.text == "no verdict: the judge has random weights"
    v = judge_verdict(by_id["fig3_5"], evidence(results, baselines={}))
    assert v.status == "none" and "unchanged content's Gram distance" in v.text
    assert judge_verdict(by_id["fig3_4"], evidence(results)).status == "disagrees"  # SSIM needs no judge
    gapped = hand_made()
    gapped["fig3_2"]["records"][0]["metrics"]["gram_style"] = None
    assert judge_verdict(by_id["fig3_2"], evidence(gapped)).text == \
        "no verdict: the judge's Gram distance was not measured"


def test_picture_kept_is_the_mean_absolute_correlation_of_the_channels_with_the_luminance():
    import torch

    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    lum = (image * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    small = torch.nn.functional.avg_pool2d(lum[None, None], 4)[0, 0]  # the image seen on an 8×8 grid
    noise = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    assert picture_kept(torch.stack([3 * small + 1, -small]), image) == pytest.approx(1.0)  # copies, either sign
    assert picture_kept(torch.stack([small, torch.zeros(8, 8)]), image) == pytest.approx(0.5)  # constant: 0
    r = abs(float(torch.corrcoef(torch.stack([noise.flatten(), small.flatten()]))[0, 1]))
    # fp32 correlations by two routes: they agree to rounding (~1e-6), not to pytest's default 1e-6 relative
    assert picture_kept(noise[None], image) == pytest.approx(r, rel=1e-5) and r < 0.5


# -- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["report", "{content}", "{tmp}/missing.png", "-o", "{tmp}/rep"], "missing.png"),
    (["report", "{content}", "{style}", "--backbones", "timm:resnet18,nope", "-o", "{tmp}/rep"], "'nope'"),
    (["report", "{content}", "{style}", "--weights", "{tmp}/mine.pth", "-o", "{tmp}/rep"],
     "report --weights takes pretrained or random, got '{tmp}/mine.pth'"),
    (["report", "{content}", "{style}", "-o", "{content}"], "is a file"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, argv, message, capsys):
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    make_rgb(48, 64).save(content)
    make_stripes(64, 64).save(style)
    argv = [a.format(content=content, style=style, tmp=tmp_path) for a in argv]
    before = sorted(tmp_path.iterdir())
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stylelab: error:")
    assert message.format(tmp=tmp_path) in err[0]
    assert sorted(tmp_path.iterdir()) == before


def test_the_unchanged_contents_distance_is_the_baseline_and_a_random_judge_gives_no_verdict(tmp_path):
    content, near, far = tmp_path / "c.png", tmp_path / "near.png", tmp_path / "far.png"
    make_rgb(48, 64).save(content)
    make_rgb(48, 64, seed=1).save(near)
    make_stripes(64, 64).save(far)
    study = Study(content, [near, far], tmp_path / "out", {"weights": "pretrained", "size": 48, "seed": 0},
                  judges=Judges("vgg19", "random"))  # LPIPS: unavailable offline
    ev = report_evidence(study)
    assert ev.judge_problem == "the judge has random weights" and ev.baselines == {}
    baselines = _baselines(study)
    assert set(baselines) == {str(near), str(far)} and 0 < baselines[str(near)] < baselines[str(far)]
