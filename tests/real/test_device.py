"""One device/dtype policy: an unavailable device is one line; every inference path is placed by it.
The dtype is the visible mark here (no GPU): with MOALIGN_DTYPE=bfloat16, each model that a policy,
a feature extractor or an objective loads must come out in bfloat16."""
import pytest
import torch

from moalign.errors import MoalignError


@pytest.fixture
def bf16(monkeypatch):
    monkeypatch.setenv("MOALIGN_DTYPE", "bfloat16")
    monkeypatch.setenv("MOALIGN_DEVICE", "cpu")


def test_devices_parse_and_refuse_in_one_line(monkeypatch):
    from moalign import device
    assert device.parse_device("cpu") == torch.device("cpu")
    assert device.parse_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(MoalignError, match="'cuda' is not available: no CUDA GPU") as e:
            device.parse_device("cuda")
        assert "\n" not in str(e.value)
        with pytest.raises(MoalignError, match="not available"):
            device.parse_device("cuda:1")
    with pytest.raises(MoalignError, match="unknown"):
        device.parse_device("tpu")
    with pytest.raises(MoalignError, match="dtype 'int8'"):
        device.parse_dtype("int8", torch.device("cpu"))
    assert device.parse_dtype("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setenv("MOALIGN_DEVICE", "nonsense")
    with pytest.raises(MoalignError):
        device.inference_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cli_device_cuda_is_status_2_before_loading_anything(run_cli, base_dir):
    code, out, err = run_cli("generate", str(base_dir), "--prompt", "hi", "--device", "cuda")
    assert code == 2 and out == ""
    assert err.strip().startswith("error: device 'cuda' is not available") and err.count("\n") == 1


def test_every_inference_path_goes_through_the_policy(bf16, base_dir, soup_dir):
    import numpy as np

    from moalign.features import Featurizer
    from moalign.objectives import get_objective
    from moalign.steerable import load_steerable
    fixed = load_steerable(base_dir)
    assert fixed.model_for().dtype == torch.bfloat16
    soup = load_steerable(soup_dir)
    assert soup.model_for({"helpful": 0.3, "harmless": 0.7}).dtype == torch.bfloat16
    model, _ = soup.prepare_batch([(["hi"], {"helpful": 1.0, "harmless": 0.0}, None),
                                   (["hi"], {"helpful": 0.0, "harmless": 1.0}, None)])
    assert next(model.parameters()).dtype == torch.bfloat16
    assert soup.generate(["how do i bake bread ?"], {"helpful": 0.5, "harmless": 0.5}, max_new_tokens=4)
    assert Featurizer(str(base_dir)).model.dtype == torch.bfloat16
    implicit = get_objective(f"implicit:{soup_dir.parent / 'helpful'}?ref={base_dir}&beta=0.1")
    assert {m.dtype for m in implicit._load()[:2]} == {torch.bfloat16}
    assert np.isfinite(implicit.score(["hi"], ["hello"])).all()


def test_freed_memory_is_reused_not_faulted_in_again():
    """A 64 MB tensor made and freed 30 times: glibc maps and unmaps it each time (its pages fault
    in again), unless `keep_freed_memory` ran."""
    import subprocess
    import sys

    code = ("import resource, sys, torch\n"
            "from moalign.device import keep_freed_memory\n"
            "kept = sys.argv[1] == '1' and keep_freed_memory()\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(30):\n"
            "    torch.ones(16 << 20).sum()\n"
            "print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    faults = {}
    for keep in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", code, keep], capture_output=True, text=True, check=True)
        kept, faults[keep] = out.stdout.split()
        assert kept == ("True" if keep == "1" else "False")
    assert int(faults["1"]) * 3 < int(faults["0"]), faults  # here: 82 thousand against 492
