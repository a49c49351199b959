import numpy as np
import pytest
from pymoo.indicators.hv import HV

from moalign.evals.pareto import das_dennis, hypervolume, non_dominated


def test_hypervolume_by_hand_and_equals_pymoo():
    pts = [[1.0, 0.2], [0.5, 0.5], [0.2, 1.0], [0.3, 0.3]]
    assert hypervolume(pts, [0, 0]) == pytest.approx(0.2 + 0.5 * 0.3 + 0.2 * 0.5)
    assert hypervolume(pts, [0, 0]) == pytest.approx(HV(ref_point=np.zeros(2))(-np.array(pts)))
    ref = [0.1, 0.1]
    assert hypervolume(pts, ref) == pytest.approx(0.9 * 0.1 + 0.4 * 0.3 + 0.1 * 0.5)
    assert hypervolume([[0.5, 0.5, 0.5]], [0, 0, 0]) == pytest.approx(0.125)
    rng = np.random.default_rng(0)
    cloud = rng.random((30, 3))
    assert hypervolume(cloud, [0, 0, 0]) == pytest.approx(HV(ref_point=np.zeros(3))(-cloud))


def test_points_below_the_reference_add_nothing():
    assert hypervolume([[0.5, -0.1]], [0, 0]) == 0.0
    assert hypervolume([[0.5, 0.5], [0.9, -1.0]], [0, 0]) == pytest.approx(0.25)


def test_non_dominated_by_hand():
    pts = [[1, 0], [0, 1], [0.5, 0.5], [0.4, 0.4], [1, 0], [0.5, 0.6]]
    assert non_dominated(pts) == [0, 1, 4, 5]
    assert non_dominated([[0.3, 0.3]] * 4) == [0, 1, 2, 3]


def test_das_dennis_rows_sum_to_one():
    d = das_dennis(3, 4)
    assert d.shape == (15, 3) and np.allclose(d.sum(1), 1)
