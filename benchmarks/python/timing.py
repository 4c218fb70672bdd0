"""The one timing rule of the Python benchmarks: the median of 5 timeit runs, per call."""

import statistics
import timeit


def per_call(fn, number):
    """Seconds per call of `fn`: the median of 5 runs of `number` calls."""
    return statistics.median(timeit.repeat(fn, number=number, repeat=5)) / number
