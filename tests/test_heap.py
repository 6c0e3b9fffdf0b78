"""Freed memory kept for reuse during a run (glibc), and glibc's defaults back afterwards."""

import pytest
import torch

import stylelab
from stylelab import heap
from stylelab.samples import sample_content, sample_style

pytestmark = pytest.mark.skipif(heap.mallinfo() is None, reason="needs glibc 2.33+ (mallinfo2)")

BLOCK = 48 * 1024 * 1024  # above glibc's largest mapping threshold, as a 512 px picture's first maps are


def mapped_while_alive(nbytes: int = BLOCK) -> int:
    """Bytes glibc mapped for one fresh tensor of ``nbytes`` (0: it came from the heap)."""
    before = heap.mallinfo().hblkhd
    block = torch.empty(nbytes // 4)
    mapped = heap.mallinfo().hblkhd - before
    del block
    return mapped


def test_kept_heap_serves_large_blocks_from_the_heap_and_keeps_them():
    with heap.kept_heap():
        pass  # from here on glibc's thresholds are its documented fixed defaults, whatever ran before
    assert mapped_while_alive() >= BLOCK
    with heap.kept_heap():
        assert mapped_while_alive() == 0
        assert heap.mallinfo().fordblks >= BLOCK  # freed, and still the process's for the next evaluation
    assert mapped_while_alive() >= BLOCK  # defaults back


def test_kept_heap_nests_and_can_be_off():
    with heap.kept_heap():
        with heap.kept_heap():
            pass
        assert mapped_while_alive() == 0  # the inner exit did not undo the outer run's setting
    with heap.kept_heap(enabled=False):
        assert mapped_while_alive() >= BLOCK


def test_a_cpu_transfer_runs_with_the_heap_kept():
    depths = []
    stylelab.transfer(sample_content(24, 32), sample_style(32, 32), weights="random", size=32, iterations=2,
                      device="cpu", callback=lambda event: depths.append(heap._depth))
    assert depths and all(d >= 1 for d in depths)
    assert heap._depth == 0
