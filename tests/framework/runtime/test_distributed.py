"""Training over MPI: 2 ranks x 1 shard is the run 1 process x 2 shards is, bit for bit;
resumes cross rank counts; a failing rank ends the job; clear messages without MPI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lamina.cli import main
from lamina.training import load_checkpoint

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or __import__("importlib").util.find_spec("mpi4py") is None,
    reason="needs mpi4py and mpiexec (pip install 'lamina[mpi]')")
LAMINA = [sys.executable, "-m", "lamina.cli"]


def mpi(n: int, *argv: str, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([MPIEXEC, "-n", str(n), *argv], capture_output=True, text=True,
                          timeout=timeout, env=env)


def same_run(a: Path, b: Path) -> None:
    x, y = load_checkpoint(a), load_checkpoint(b)
    assert x.epoch == y.epoch
    for key in x.params:
        np.testing.assert_array_equal(x.params[key], y.params[key], err_msg=key)
    for key in x.optimizer:
        np.testing.assert_array_equal(x.optimizer[key], y.optimizer[key], err_msg=key)
    assert x.rng_state == y.rng_state
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in x.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in y.history]


@pytest.fixture
def env(mnist_root):
    return {**os.environ, "LAMINA_DATA": mnist_root}


@needs_mpi
def test_two_ranks_train_the_run_one_process_with_two_shards_trains(tmp_path, tiny_config,
                                                                    env):
    common = [str(tiny_config), "--epochs", "2", "--limit", "600", "--quiet"]
    two = mpi(2, *LAMINA, "train", *common, "--distributed", "mpi",
              "--run-dir", str(tmp_path / "two"), env=env)
    assert two.returncode == 0, two.stderr
    # rank 0 alone prints: one run directory line, one line per epoch
    assert two.stdout.count("run directory:") == 1 and two.stdout.count("epoch 2/2") == 1
    one = subprocess.run([*LAMINA, "train", *common, "--run-dir", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr
    same_run(tmp_path / "one", tmp_path / "two")
    provenance = (tmp_path / "two" / "provenance.json").read_text()
    assert "2 shards on 2 MPI ranks" in provenance


@needs_mpi
def test_a_run_resumes_across_rank_counts_bit_identically(tmp_path, tiny_config, env):
    common = [str(tiny_config), "--limit", "400", "--quiet"]
    straight = tmp_path / "straight"
    assert subprocess.run([*LAMINA, "train", *common, "--epochs", "3", "--run-dir",
                           str(straight)], env=env, capture_output=True).returncode == 0
    # 1 epoch on two ranks, then one on one process, then the last on two ranks again
    mixed = tmp_path / "mixed"
    assert mpi(2, *LAMINA, "train", *common, "--epochs", "1", "--distributed", "mpi",
               "--run-dir", str(mixed), env=env).returncode == 0
    assert subprocess.run([*LAMINA, "train", "--resume", str(mixed), "--epochs", "2",
                           "--quiet"], env=env, capture_output=True).returncode == 0
    resumed = mpi(2, *LAMINA, "train", "--resume", str(mixed), "--epochs", "3", "--quiet",
                  "--distributed", "mpi", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("resuming") == 1
    same_run(straight, mixed)


KILL_RANK_1 = """
import os, signal, sys
from lamina.training import trainer

real = trainer.train_epoch

def train_epoch(session, data, *, progress):
    if session.step.comm.rank == 1 and session.epoch == 2:
        if sys.argv[-1] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("rank 1 broke")
    return real(session, data, progress=progress)

trainer.train_epoch = train_epoch
from lamina.cli import main
sys.exit(main(sys.argv[1:-1]))
"""


@needs_mpi
@pytest.mark.parametrize("how", ["kill", "raise"])
def test_a_failing_rank_ends_the_job_and_keeps_the_last_checkpoint(tmp_path, tiny_config,
                                                                   env, how):
    started = time.monotonic()
    run = mpi(2, sys.executable, "-c", KILL_RANK_1, "train", str(tiny_config), "--epochs", "4",
              "--limit", "400", "--quiet", "--distributed", "mpi", "--run-dir",
              str(tmp_path / "run"), how, env=env, timeout=120)
    assert time.monotonic() - started < 60  # ended, did not hang
    assert run.returncode != 0, run.stdout + run.stderr
    said = run.stdout + run.stderr
    if how == "raise":
        assert "error (rank 1 of 2): RuntimeError: rank 1 broke; ending every rank" in said, said
    else:  # the launcher names the process that died; rank 0 said which rank that is
        import re

        pid = re.search(r"rank 1 pid (\d+) on ", said).group(1)
        assert f"PID {pid} " in said, said
    # rank 1 failed at the start of epoch 3: epoch 1's checkpoint at least is there, and
    # whatever the kill interrupted (epoch 2's write) did not damage the directory
    assert load_checkpoint(tmp_path / "run").epoch in (1, 2)


@needs_mpi
def test_more_ranks_than_shards_is_a_config_mistake(tmp_path, tiny_config, env):
    run = mpi(2, *LAMINA, "train", str(tiny_config), "--epochs", "1", "--limit", "200",
              "--shards", "1", "--distributed", "mpi", "--run-dir", str(tmp_path / "run"),
              env=env, timeout=120)
    assert run.returncode != 0
    assert run.stderr.count("1 shard per batch cannot be split over 2 MPI ranks") == 1
    assert not (tmp_path / "run").exists()


def test_without_mpi4py_the_message_says_how_to_install_it(tiny_config, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    assert main(["train", str(tiny_config), "--distributed", "mpi"]) == 2
    err = capsys.readouterr().err
    assert "--distributed mpi needs mpi4py" in err and "pip install 'lamina[mpi]'" in err


def test_a_launcher_without_the_flag_is_warned_about(tmp_path, tiny_config, mnist_root,
                                                     monkeypatch, capsys):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    assert main(["train", str(tiny_config), "--epochs", "1", "--limit", "100", "--quiet",
                 "--run-dir", str(tmp_path / "run"), "--data-dir", mnist_root]) == 0
    assert ("warning: this is one of 2 processes an MPI launcher started, but --distributed "
            "mpi was not given") in capsys.readouterr().err


MODEL_FIT = """
import sys
import numpy as np
import lamina
from lamina.data import load_dataset

distributed = sys.argv[2] or None
data = load_dataset("mnist", limit=300, parts=("train",))
model = lamina.Model(sys.argv[1], seed=5, distributed=distributed)
model.fit(data.train_x, data.train_y, epochs=2, batch_size=60, verbose=0)
model.save(sys.argv[3] if len(sys.argv) > 3 else "one")
"""


@needs_mpi
def test_model_fit_over_mpi_matches_one_process(tmp_path, tiny_config, env):
    one = subprocess.run([sys.executable, "-c", MODEL_FIT, str(tiny_config), "",
                          str(tmp_path / "one")], env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = mpi(2, sys.executable, "-c", MODEL_FIT, str(tiny_config), "mpi",
              str(tmp_path / "two"), env=env)
    assert two.returncode == 0, two.stderr
    same_run(tmp_path / "one", tmp_path / "two")


@needs_mpi
def test_the_test_set_evaluation_splits_over_ranks_with_the_same_report(tmp_path,
                                                                        tiny_config, env):
    import json

    run = tmp_path / "run"
    assert subprocess.run([*LAMINA, "train", str(tiny_config), "--epochs", "1", "--limit",
                           "300", "--quiet", "--run-dir", str(run)], env=env,
                          capture_output=True).returncode == 0
    one = subprocess.run([*LAMINA, "evaluate", str(run), "--json"], env=env,
                         capture_output=True, text=True)
    two = mpi(2, *LAMINA, "evaluate", str(run), "--json", "--distributed", "mpi", env=env)
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout) == json.loads(one.stdout)  # rank 0 alone printed it


@needs_mpi
def test_a_batch_too_short_for_every_rank_to_have_a_shard(tmp_path, tiny_config, env):
    # 12 samples: 1 for validation, batches of 5, 5 and 1 (rank 1 gets no shard of the last
    # batch, nor of the one validation sample)
    common = [str(tiny_config), "--epochs", "2", "--limit", "12", "--batch-size", "5",
              "--quiet"]
    two = mpi(2, *LAMINA, "train", *common, "--distributed", "mpi", "--run-dir",
              str(tmp_path / "two"), env=env, timeout=120)
    assert two.returncode == 0, two.stdout + two.stderr
    assert subprocess.run([*LAMINA, "train", *common, "--run-dir", str(tmp_path / "one")],
                          env=env, capture_output=True).returncode == 0
    same_run(tmp_path / "one", tmp_path / "two")


FAIL_ON_RANK = """
import os, sys
rank = int(os.environ.get("PMI_RANK", "0"))
where, failing = sys.argv[-2], int(sys.argv[-1])
if rank == failing:
    if where == "write":  # rank 0 cannot write the run's provenance: a full disk
        import errno
        from lamina.training import runs
        real = runs.write_json
        def write_json(path, obj):
            if path.name == "provenance.json":
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real(path, obj)
        runs.write_json = write_json
    else:  # this rank cannot build the network: a plugin missing on its host
        from lamina.training import trainer
        def make_session(*args, **kwargs):
            from lamina import PluginError
            raise PluginError("unknown layer type 'swish' on this host")
        trainer.make_session = make_session
        import lamina.training.api as api
        api.make_session = make_session
from lamina.cli import main
sys.exit(main(sys.argv[1:-2]))
"""


@needs_mpi
@pytest.mark.parametrize(("where", "rank", "message"), [
    ("write", 0, "No space left on device"),
    ("session", 1, "rank 1 of 2: unknown layer type 'swish' on this host"),
])
def test_a_rank_failing_before_training_stops_every_rank(tmp_path, tiny_config, env, where,
                                                         rank, message):
    started = time.monotonic()
    run = mpi(2, sys.executable, "-c", FAIL_ON_RANK, "train", str(tiny_config), "--epochs",
              "1", "--limit", "200", "--quiet", "--distributed", "mpi", "--run-dir",
              str(tmp_path / "run"), where, str(rank), env=env, timeout=60)
    assert time.monotonic() - started < 30, "a rank waited for one that had failed"
    assert run.returncode != 0
    said = run.stdout + run.stderr
    assert said.count(message) == 1, said
    assert "Traceback" not in said


MODEL_ODD_RANK = """
import os, sys
import numpy as np
import lamina

rank = int(os.environ.get("PMI_RANK", "0"))
rng = np.random.default_rng(0)
x, y = rng.random((64, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 64)
model = lamina.Model(sys.argv[1], seed=5, distributed="mpi")
odd = sys.argv[2]
if rank == 1 and odd == "malformed":
    x = x[:, 0]  # no channel axis: an InputError on this rank only
elif rank == 1 and odd == "fewer":
    x, y = x[:32], y[:32]  # valid, but not what rank 0 passed
try:
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
except lamina.LaminaError as error:
    print(f"rank {rank}: {type(error).__name__}: {error}")
    sys.exit(3)
"""


@needs_mpi
@pytest.mark.parametrize(("odd", "said"), [
    ("malformed", ["rank 1: InputError: x has shape (64, 28, 28): no channel axis",
                   "rank 0: PeerFailed: rank 1 of 2: x has shape (64, 28, 28)"]),
    ("fewer", ["rank 0: InputError: fit() was called with other arguments on rank 1",
               "rank 1: InputError: fit() was called with other arguments on rank 1"]),
])
def test_a_model_call_one_rank_gets_wrong_fails_on_every_rank(tmp_path, tiny_config, odd, said):
    """Before: rank 1 reported its InputError and rank 0 waited in the first all-reduce
    forever. Now every rank's call raises, and the script decides what to do."""
    started = time.monotonic()
    run = mpi(2, sys.executable, "-c", MODEL_ODD_RANK, str(tiny_config), odd, timeout=90)
    assert time.monotonic() - started < 60, "a rank waited for one that had failed"
    assert run.returncode == 3, run.stdout + run.stderr
    for line in said:
        assert line in run.stdout, run.stdout + run.stderr


@needs_mpi
def test_evaluate_under_a_launcher_without_the_flag_is_warned_about(tmp_path, tiny_config, env):
    run = tmp_path / "run"
    assert subprocess.run([*LAMINA, "train", str(tiny_config), "--epochs", "1", "--limit",
                           "100", "--quiet", "--run-dir", str(run)], env=env,
                          capture_output=True).returncode == 0
    two = mpi(2, *LAMINA, "evaluate", str(run), env=env)
    assert two.returncode == 0, two.stderr
    assert two.stderr.count("warning: this is one of 2 processes an MPI launcher started, "
                            "but --distributed mpi was not given: each runs the whole "
                            "evaluate alone") == 1


MODEL_SAVE_ODD_RANK = """
import os, sys
import lamina

rank = int(os.environ.get("PMI_RANK", "0"))
model = lamina.Model(sys.argv[1], seed=5, distributed="mpi")
try:
    model.save(5 if rank == 1 else sys.argv[2])
except lamina.LaminaError as error:
    print(f"rank {rank}: save: {type(error).__name__}")
model.export(sys.argv[3])  # the next collective call is not disturbed by the failed one
print(f"rank {rank}: export ok")
"""


@needs_mpi
def test_a_save_one_rank_gets_wrong_fails_on_every_rank_and_leaves_the_next_call(tmp_path,
                                                                                tiny_config):
    """Before: rank 1 refused its path before the collective step, and rank 0's broadcast
    was picked up by rank 1's next call as a false failure."""
    run = mpi(2, sys.executable, "-c", MODEL_SAVE_ODD_RANK, str(tiny_config),
              str(tmp_path / "saved"), str(tmp_path / "model.onnx"), timeout=90)
    assert run.returncode == 0, run.stdout + run.stderr
    for line in ("rank 0: save: PeerFailed", "rank 1: save: InputError",
                 "rank 0: export ok", "rank 1: export ok"):
        assert line in run.stdout, run.stdout + run.stderr
    assert not (tmp_path / "saved").exists() and (tmp_path / "model.onnx").is_file()


LOCAL_PLUGIN = """
import numpy as np
from lamina import Example, Layer, hookimpl


class Cube(Layer):
    name = "cube"

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, *, training):
        self.cache = x
        return {factor} * x ** 3

    def backward(self, dy, *, input_grad=True):
        return 3 * {factor} * self.cached() ** 2 * dy

    @classmethod
    def examples(cls):
        return [Example({{}}, (3,))]


@hookimpl
def lamina_register_layers():
    return [Cube]
"""

@needs_mpi
@pytest.mark.parametrize("same", [True, False])
def test_ranks_running_other_code_for_a_local_plugin_stop_before_training(tmp_path, env, same):
    import json

    dirs = []
    for rank in range(2):
        folder = tmp_path / f"rank{rank}"
        folder.mkdir()
        factor = 1.0 if same or rank == 0 else 1.5
        (folder / "cube_layers.py").write_text(LOCAL_PLUGIN.format(factor=factor))
        dirs.append(str(folder))
    config = tmp_path / "net.json"
    config.write_text(json.dumps({"model": {"input_shape": [1, 28, 28], "layers": [
        {"type": "flatten"}, {"type": "dense", "units": 8}, {"type": "cube"},
        {"type": "dense", "units": 10}]}}))
    script = ("import os, sys\nfrom lamina.cli import main\n"
              "folder = os.environ['DIRS'].split(':')[int(os.environ.get('PMI_RANK', '0'))]\n"
              "sys.exit(main([*sys.argv[1:], '-p', os.path.join(folder, 'cube_layers.py')]))\n")
    run = tmp_path / "run"
    result = mpi(2, sys.executable, "-c", script, "train", str(config), "--epochs", "1",
                 "--limit", "200", "--quiet", "--distributed", "mpi", "--run-dir", str(run),
                 env={**env, "DIRS": ":".join(dirs)}, timeout=120)
    if same:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, result.stdout + result.stderr
    assert "rank 1 runs other plugin code than rank 0 for cube" in result.stderr
    assert not run.exists()  # stopped before anything was written
