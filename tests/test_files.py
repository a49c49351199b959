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


def test_a_shared_training_runs_once_and_counts_for_each_method(tmp_path):
    from moalign.files import sharing

    runs = []

    def train(where):
        def run():
            runs.append(where.name)
            where.mkdir(parents=True)
            (where / "weights").write_text("trained")
            time.sleep(0.2)
        return run

    with sharing(tmp_path / "shared"):
        step(tmp_path / "soup" / "concise", train(tmp_path / "soup" / "concise"), Stopwatch(), share="k1")
        modpo = Stopwatch()
        assert step(tmp_path / "modpo" / "margin", train(tmp_path / "modpo" / "margin"), modpo,
                    share="k1") >= 0.2
        assert modpo.seconds() >= 0.2  # the method's cost includes the copied training
        step(tmp_path / "modpo" / "other", train(tmp_path / "modpo" / "other"), share="k2")
    step(tmp_path / "alone", train(tmp_path / "alone"), share="k1")  # no sharing block: trains
    assert runs == ["concise", "other", "alone"]
    assert (tmp_path / "modpo" / "margin" / "weights").read_text() == "trained"
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["k1", "k2"]
