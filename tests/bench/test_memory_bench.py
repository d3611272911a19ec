"""bench/memory_bench.py: the README's memory bound that ``make bench`` checks."""

from bench.memory_bench import GROWTH_ALLOWANCE, growth_bound


def test_the_bound_is_the_int16_track_of_the_difference_plus_60_mib():
    assert GROWTH_ALLOWANCE == 60 * 2**20
    # 60 min against 15 s at 16 kHz: 3585 s of 2-byte samples, 109.4 MiB.
    assert growth_bound(15, 3600) == 2 * 16000 * 3585 + 60 * 2**20
    assert growth_bound(10, 10) == GROWTH_ALLOWANCE
    assert growth_bound(0, 600, rate=8000) - growth_bound(0, 300, rate=8000) == 2 * 8000 * 300
