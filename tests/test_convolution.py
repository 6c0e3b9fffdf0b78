"""Winograd 3×3 convolutions (backbones/convolution.py) against float64 references, the rule that picks them,
and the Gram matrix's one-product backward against autograd's."""

import platform

import pytest
import torch
import torch.nn.functional as F

from stylelab import StylelabError, transfer
from stylelab.backbones import convolution, create_backbone
from stylelab.backbones.convolution import (
    WINOGRAD_MIN_POSITIONS, WinogradConv2d, check_convolution, convolution_in_effect, use_convolution,
    winograd_available, winograd_conv3x3,
)
from stylelab.losses.functional import gram_matrix, normalized_gram

SHAPES = [  # (batch, in, out, H, W): an RGB input, tiny and odd maps, a batch, deep channels
    (1, 3, 16, 20, 24), (1, 8, 8, 1, 1), (1, 16, 8, 3, 5), (2, 32, 16, 9, 7), (1, 128, 64, 12, 10),
]


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.detach().double() - reference.detach()).norm() / reference.detach().norm())


def test_pytorchs_x86_linux_builds_carry_nnpack():
    """Otherwise every test below would pass through the direct fallback and prove nothing."""
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        assert winograd_available()


@pytest.mark.parametrize("b,cin,cout,h,w", SHAPES)
def test_winograd_forward_and_input_gradient_match_float64(b, cin, cout, h, w):
    torch.manual_seed(0)
    x = torch.rand(b, cin, h, w) * 2 - 0.5
    weight, bias = torch.randn(cout, cin, 3, 3) / (9 * cin) ** 0.5, torch.randn(cout) * 0.1
    grad_out = torch.randn(b, cout, h, w)
    x64 = x.double().requires_grad_(True)
    ref = F.conv2d(x64, weight.double(), bias.double(), padding=1)
    ref.backward(grad_out.double())

    xw = x.clone().requires_grad_(True)
    out = winograd_conv3x3(xw, weight, bias)
    out.backward(grad_out)
    direct = F.conv2d(x, weight, bias, padding=1)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    # fp32-class accuracy: the direct convolution's own error is ~5e-7 on these shapes
    assert relative_error(out, ref.detach()) < 2e-5
    assert relative_error(xw.grad, x64.grad) < 2e-5
    assert relative_error(direct, ref.detach()) < 2e-5


def test_the_bound_can_fail_a_kernel_not_rotated_for_the_backward_misses_it():
    assert winograd_available()  # also initializes NNPACK for the direct call below
    torch.manual_seed(0)
    weight, grad_out = torch.randn(8, 4, 3, 3), torch.randn(1, 8, 20, 24)
    x64 = torch.rand(1, 4, 20, 24, dtype=torch.float64, requires_grad=True)
    F.conv2d(x64, weight.double(), padding=1).backward(grad_out.double())
    not_rotated = torch._nnpack_spatial_convolution(grad_out, weight.transpose(0, 1).contiguous(), None, [1, 1])
    assert relative_error(not_rotated, x64.grad) > 0.1


def test_use_convolution_keeps_parameters_and_direct_is_pytorchs_own():
    net = create_backbone("vgg19", "random")
    reference = create_backbone("vgg19", "random")
    keys = list(net.state_dict())
    count = use_convolution(net, "auto")
    assert count == 16  # VGG19's sixteen 3×3 convolutions
    assert sum(isinstance(m, WinogradConv2d) for m in net.modules()) == 16
    assert list(net.state_dict()) == keys
    assert use_convolution(net, "auto") == 16  # idempotent
    image = torch.rand(1, 3, 48, 64)
    names = ["relu1_1", "relu3_1", "relu5_1"]
    use_convolution(net, "direct")
    direct, expected = net(image, names), reference(image, names)
    for name in names:
        assert torch.equal(direct[name], expected[name])  # bit for bit: the plain path is untouched
    use_convolution(net, "winograd")
    fast = net(image, names)
    for name in names:
        assert relative_error(fast[name], expected[name].double()) < 1e-4


def test_auto_uses_winograd_on_large_maps_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    calls = []
    real = convolution.winograd_conv3x3
    monkeypatch.setattr(convolution, "winograd_conv3x3", lambda x, w, b=None: calls.append(x.shape[-2:]) or real(x, w, b))
    net = create_backbone("vgg19", "random")
    use_convolution(net, "auto")
    net(torch.rand(1, 3, 64, 64), ["relu5_1"])
    # conv1_x at 64×64 and conv2_x at 32×32 (1024 positions); conv3_x (16×16) and deeper stay direct
    assert [tuple(s) for s in calls] == [(64, 64)] * 2 + [(32, 32)] * 2
    assert 32 * 32 >= WINOGRAD_MIN_POSITIONS > 16 * 16
    calls.clear()
    use_convolution(net, "winograd")
    net(torch.rand(1, 3, 64, 64), ["relu5_1"])
    assert len(calls) == 13  # every convolution up to conv5_1
    calls.clear()
    net(torch.rand(1, 3, 64, 64).contiguous(memory_format=torch.channels_last), ["relu1_1"])
    assert calls == []  # channels_last stays with oneDNN


def test_trainable_weights_and_other_convolutions_stay_direct(monkeypatch):
    calls = []
    monkeypatch.setattr(convolution, "winograd_conv3x3", lambda *a: calls.append(1))
    strided = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1)
    five = torch.nn.Conv2d(4, 4, 5, padding=2)
    trainable = torch.nn.Conv2d(4, 4, 3, padding=1)
    model = torch.nn.Sequential(strided, five, trainable)
    assert use_convolution(model, "winograd") == 1
    assert type(strided) is torch.nn.Conv2d and type(five) is torch.nn.Conv2d
    out = model(torch.rand(1, 4, 64, 64))  # the 3×3 one has requires_grad weights: autograd needs them
    assert calls == [] and out.shape == (1, 4, 32, 32)


def test_convolution_names_and_devices_are_checked():
    with pytest.raises(StylelabError, match="unknown convolution 'fast'; choose auto, direct, winograd"):
        check_convolution("fast")
    with pytest.raises(StylelabError, match="winograd runs on the CPU"):
        check_convolution("winograd", torch.device("cuda"))
    check_convolution("auto", torch.device("cuda"))  # auto is direct off the CPU


INTEL = ("GenuineIntel", 6)


@pytest.mark.parametrize("capability", ["AVX512", "DEFAULT"])
def test_auto_is_direct_on_cpus_beyond_or_below_avx2(monkeypatch, capability):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(convolution, "cpu_vendor_family", lambda: INTEL)
    net = create_backbone("vgg19", "random")
    use_convolution(net, "auto")
    assert {m.algorithm for m in net.modules() if isinstance(m, WinogradConv2d)} == {"direct"}
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    use_convolution(net, "auto")
    assert {m.algorithm for m in net.modules() if isinstance(m, WinogradConv2d)} == {"auto"}


@pytest.mark.parametrize("vendor, capability, algorithm", [
    (convolution.ZEN4, "AVX512", "auto"),  # Zen 4: AVX-512 on 256-bit units, where Winograd measured 1.5×
    (("AuthenticAMD", 0x1A), "AVX512", "direct"),  # Zen 5: full-width AVX-512, not measured
    (INTEL, "AVX512", "direct"),
    (convolution.ZEN4, "DEFAULT", "direct"),
    (("AuthenticAMD", 0x17), "AVX2", "auto"),
    (("", None), "AVX2", "auto"),  # no /proc/cpuinfo: the capability alone decides
])
def test_auto_takes_winograd_by_vector_unit_and_cpu_family(monkeypatch, vendor, capability, algorithm):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(convolution, "cpu_vendor_family", lambda: vendor)
    net = create_backbone("vgg19", "random")
    use_convolution(net, "auto")
    assert {m.algorithm for m in net.modules() if isinstance(m, WinogradConv2d)} == {algorithm}


def test_cpuinfo_names_model_vendor_and_family():
    from stylelab.runtime import cpu_description, cpu_info

    amd = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
           "model name\t: AMD EPYC 9R14\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n")
    assert cpu_info(amd) == ("AMD EPYC 9R14", "AuthenticAMD", 25) and cpu_info(amd)[1:] == convolution.ZEN4
    assert cpu_info("vendor_id : GenuineIntel\ncpu family : 6\n")[1:] == INTEL
    assert cpu_info("Processor : ARMv8\n") == ("", "", None)
    described = cpu_description()  # this machine's, whatever it is: named with PyTorch's vector unit
    assert described.endswith(f"{torch.backends.cpu.get_cpu_capability()})") and len(described) > 4


def test_records_name_the_convolution_that_ran(monkeypatch):
    from stylelab.runtime import describe_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(convolution, "cpu_vendor_family", lambda: INTEL)
    assert convolution_in_effect("auto", cpu) == "direct" == convolution_in_effect("winograd", cuda)
    assert describe_precision("fp32", False, convolution_in_effect("auto", cpu)) == describe_precision("fp32")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert convolution_in_effect("auto", cpu).startswith("auto (Winograd on maps of >= 1024")
    assert convolution_in_effect("direct", cpu) == "direct" and convolution_in_effect("winograd", cpu) == "winograd"
    assert describe_precision("fp32", False, "winograd").endswith(", convolution winograd")


def test_without_nnpack_auto_is_direct_and_winograd_is_refused(monkeypatch):
    monkeypatch.setattr(convolution, "_nnpack", False)
    with pytest.raises(StylelabError, match="needs NNPACK"):
        check_convolution("winograd")
    net = create_backbone("vgg19", "random")
    use_convolution(net, "auto")
    assert {m.algorithm for m in net.modules() if isinstance(m, WinogradConv2d)} == {"direct"}


def test_a_transfer_with_winograd_follows_the_direct_one_and_repeats_exactly():
    g = torch.Generator().manual_seed(1)
    content, style = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    run = dict(weights="random", size=64, iterations=8, device="cpu", report_every=1)

    def traced(convolution):
        events = []
        result = transfer(content, style, convolution=convolution,
                          callback=lambda e: events.append((e.loss, e.image.clone())), **run)
        return result, events

    (direct, direct_events), (fast, fast_events), (again, _) = traced("direct"), traced("winograd"), traced("winograd")
    assert torch.equal(fast.image, again.image)  # a rule on shapes, no timing: the same job, the same pixels
    # The same image (the content) gives the same loss, and the first step the same pixels, to fp32 accuracy.
    assert fast_events[0][0] == pytest.approx(direct_events[0][0], rel=1e-5)
    assert torch.allclose(fast_events[1][1], direct_events[1][1], atol=1e-5)
    # Later the runs part by more than rounding: L-BFGS's first curvature pair comes from a tiny first step, so
    # its scale amplifies any 1e-7 difference (a different thread count does the same); both still descend alike.
    assert fast.final.loss == pytest.approx(direct.final.loss, rel=0.05)
    assert fast.final.loss < 0.2 * fast_events[0][0]


def test_normalized_gram_backward_matches_autograd_and_gradcheck():
    torch.manual_seed(0)
    features = torch.randn(2, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(normalized_gram, (features,))
    weights = torch.randn(2, 5, 5, dtype=torch.float64)
    (normalized_gram(features) * weights).sum().backward()
    ours = features.grad.clone()
    features.grad = None
    (gram_matrix(features) / 7 * weights).sum().backward()  # autograd through bmm(F, Fᵀ)
    assert torch.allclose(ours, features.grad, rtol=1e-12, atol=1e-12)
    by_hand = torch.einsum("bij,bjm->bim", weights + weights.transpose(1, 2), features.detach()) / 7
    assert torch.allclose(ours, by_hand, rtol=1e-12, atol=1e-12)
