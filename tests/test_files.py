"""The one definition of train_seconds: the whole training's wall time, less what a method
measures only for its report, plus the seconds of the steps an earlier attempt finished."""
import time

from moalign.files import Stopwatch, step


def test_a_resumed_step_counts_the_seconds_it_took_then(tmp_path):
    first = Stopwatch()
    assert step(tmp_path / "a", lambda: ((tmp_path / "a").mkdir(), time.sleep(0.3))) >= 0.3
    assert first.seconds() >= 0.3
    again = Stopwatch()  # the resumed attempt: the step is not run, its seconds still count
    assert step(tmp_path / "a", lambda: 1 / 0, again) >= 0.3
    assert 0.3 <= again.seconds() < 0.4


def test_what_is_measured_for_the_report_is_not_training(tmp_path):
    watch = Stopwatch()
    time.sleep(0.2)
    with watch.excluded():
        time.sleep(0.3)
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / ".step-done").write_text("5.0")  # a skipped baseline step inside the report
        step(tmp_path / "b", lambda: 1 / 0, watch)
    assert 0.2 <= watch.seconds() < 0.3
