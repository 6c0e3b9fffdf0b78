"""One typed configuration (issue 12): its fields, transfer()'s keywords and the CLI's flags are one set; the
flat and the grouped forms are the same run; backbone options travel in the backbone group."""

from __future__ import annotations

import inspect

import pytest
import torch

from stylelab import BackboneConfig, LossConfig, OptimizerConfig, StylelabError, TransferConfig, transfer
from stylelab.cli import build_parser
from stylelab.config import option_names

CLI_ONLY = {"content", "styles", "contents", "output", "quiet", "save_every", "trace", "animate", "animate_every",
            "bit_depth", "command", "run", "parameter_flags", "ray",
            "plain"}  # files, reporting, where it runs: the CLI's business (--plain: stylelab.PLAIN as one flag)
API_ONLY = {"report_every"}  # the CLI derives it from --trace, frames and the device


def test_the_config_transfer_and_the_cli_name_the_same_options():
    keywords = set(inspect.signature(transfer).parameters) - {"content", "style", "config", "callback", "on_result",
                                                              "log", "extra_terms"}
    assert keywords == option_names()
    args = build_parser().parse_args(["transfer", "c.png", "s.png", "-o", "o.png"])
    assert set(vars(args)) - CLI_ONLY == option_names() - API_ONLY


def test_flat_options_round_trip_and_unknown_names_are_listed():
    flat = {"backbone": "vgg19", "weights": "random", "pooling": "avg", "style_weight": 5.0, "iterations": 7,
            "size": 64, "seed": 3, "balance": "auto"}
    config = TransferConfig.from_options(**flat)
    assert config.backbone == BackboneConfig("vgg19", "random", {"pooling": "avg"})
    assert config.loss.style_weight == 5.0 and config.loss.balance == "auto" and config.optimizer.iterations == 7
    assert {k: v for k, v in config.options().items() if k in flat} == flat
    with pytest.raises(StylelabError, match="unknown option stlye_weight; valid options: .*style_weight"):
        TransferConfig.from_options(stlye_weight=1.0)


def test_a_config_runs_the_same_transfer_as_the_keywords():
    content = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    flat = dict(weights="random", size=32, iterations=3, device="cpu", style_layers="relu1_1,relu2_1",
                content_layers="relu2_2")
    by_keywords = transfer(content, style, **flat)
    by_config = transfer(content, style, config=TransferConfig.from_options(**flat))
    assert torch.equal(by_keywords.image, by_config.image)
    with pytest.raises(StylelabError, match="pass size inside it"):
        transfer(content, style, config=TransferConfig(), size=64)


def test_backbone_options_are_validated_by_the_registry():
    config = TransferConfig(backbone=BackboneConfig("clip-rn50", "random", {"pooling": "avg"}),
                            optimizer=OptimizerConfig(iterations=1), loss=LossConfig())
    with pytest.raises(StylelabError, match="backbone clip-rn50 has no option pooling"):
        transfer(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), config=config)
